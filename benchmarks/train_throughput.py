"""Training throughput: the Ray Train worker loop against a plain PyTorch loop, side by side.

    python benchmarks/train_throughput.py                       # bundled sample
    python benchmarks/train_throughput.py --mnist-dir ../shared/data/mnist --epochs 3

For each batch size (64, 256) it times, in this one run:
- the plain loop: `engine.train_epoch` over in-memory tensors in this process, 1 thread, the same
  model, optimiser, loss and batch size (the work of one core);
- `handvae train` with 1 and 2 CPU workers (1 thread each), read from its metrics.jsonl: training
  images per second over the epoch loop, median over epochs after the first (warm-up).
It prints images/s and the ratio per core: (Ray images/s / workers) / plain images/s. Target: >= 0.9.
"""

import json
import statistics
import tempfile
import time

import torch
import typer

from handvae.data.sources import DataSources, read_split, to_tensors
from handvae.formats.checkpoints import METRICS_FILE
from handvae.model.steps import train_epoch
from handvae.model.vae import VAE
from handvae.runtime import init_ray
from handvae.train.config import TrainConfig
from handvae.train.driver import run_training


def plain_images_per_second(images: torch.Tensor, labels: torch.Tensor, batch_size: int, epochs: int) -> float:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters())
    config = TrainConfig(batch_size=batch_size)
    rates = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(labels))
        started = time.perf_counter()
        train_epoch(model, optimizer, images, labels, order, epoch, config)
        rates.append(len(labels) / (time.perf_counter() - started))
    return statistics.median(rates[1:] or rates)


def main(
    letters_csv: str | None = None,
    mnist_dir: str | None = None,
    epochs: int = typer.Option(4, help="Epochs per measurement; the first is warm-up."),
    out: str | None = typer.Option(None, help="Also write the figures as JSON here."),
):
    sources = DataSources(letters_csv=letters_csv, mnist_dir=mnist_dir)
    init_ray(extra_cpus=2)  # room for up to 2 training workers beside the data tasks
    images, labels = to_tensors(read_split(sources, "train"))
    print(
        f"{len(labels)} training images ({'bundled sample' if sources.is_sample else 'given sources'}), {epochs} epochs each"
    )
    rows = []
    for batch_size in (64, 256):
        plain = plain_images_per_second(images, labels, batch_size, epochs)
        for workers in (1, 2):
            config = TrainConfig(epochs=epochs, batch_size=batch_size, num_workers=workers)
            with tempfile.TemporaryDirectory() as storage:
                result = run_training(config, sources, f"bench-{batch_size}-{workers}", storage)
                with open(f"{result.run_dir}/{METRICS_FILE}") as f:
                    rates = [json.loads(line)["images_per_second"] for line in f][1:]
            ray_rate = statistics.median(rates)
            rows.append(
                {
                    "batch_size": batch_size,
                    "workers": workers,
                    "plain_images_per_second": plain,
                    "ray_images_per_second": ray_rate,
                    "ratio_per_core": ray_rate / workers / plain,
                }
            )
    print(f"\n{'batch':>5} {'workers':>7} {'plain img/s':>12} {'ray img/s':>10} {'per core':>9}  (target >= 0.90)")
    for r in rows:
        print(
            f"{r['batch_size']:>5} {r['workers']:>7} {r['plain_images_per_second']:>12.0f} {r['ray_images_per_second']:>10.0f} {r['ratio_per_core']:>9.2f}"
        )
    if out:
        with open(out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    typer.run(main)
