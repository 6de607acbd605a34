"""Generation throughput: the full `handvae generate` job against the plain model's decode, side by side.

    python benchmarks/generate_throughput.py                          # bundled sample's test styles
    python benchmarks/generate_throughput.py --mnist-dir ../shared/data/mnist              # 360,000 characters
    python benchmarks/generate_throughput.py --mnist-dir ../shared/data/mnist --split train  # 2,160,000

In this one run:
- the job: `run_generation` (read the styles, encode, decode all 36 characters, PNG-encode, write
  parquet) with W model actors of one thread each, timed after Ray has started;
- the plain loop: `model.decode` over in-memory styles and one-hot labels in this process, the same
  batch (styles_per_batch x 36 images), with W threads (the job's model threads); its rate is the
  best of 3 passes over up to 200,000 images.
Prints generated characters per second for each and the ratio job / plain. Target: >= 0.8.
The job's rate includes its start (Ray's worker processes importing torch, reading the styles,
starting the actors: about 8 s on 2 cores), so it rises with the size of the run.
"""

import json
import tempfile
import time
from typing import Optional

import torch
import typer

from handvae.checkpoint import save_model
from handvae.data.datasets import DataSources
from handvae.generate import GenerateOptions, run_generation
from handvae.labels import NUM_CLASSES
from handvae.model import VAE
from handvae.runtime import init_ray


def plain_decode_per_second(model: VAE, images: int, batch: int, threads: int, repeats: int = 3) -> float:
    images = min(images, 200_000)
    torch.set_num_threads(threads)
    z = torch.randn(batch, model.config.num_latent)
    one_hot = torch.nn.functional.one_hot(torch.arange(batch) % NUM_CLASSES, NUM_CLASSES).float()
    rates = []
    with torch.no_grad():
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(0, images, batch):
                model.decode(z, one_hot).sigmoid()
            rates.append(-(-images // batch) * batch / (time.perf_counter() - started))
    return max(rates)


def main(
    model_path: Optional[str] = typer.Option(None, "--model", help="A model file (default: an untrained model; speed does not depend on weights)."),
    letters_csv: Optional[str] = None,
    mnist_dir: Optional[str] = None,
    split: str = typer.Option("test", help="The split whose images give the styles."),
    num_styles: Optional[int] = typer.Option(None, help="Styles (default: all of the split)."),
    workers: int = typer.Option(1, help="Model actors, one thread each (the job's default on 2 cores)."),
    out: Optional[str] = typer.Option(None, help="Also write the figures as JSON here."),
):
    sources = DataSources(letters_csv=letters_csv, mnist_dir=mnist_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if model_path is None:
            torch.manual_seed(0)
            model_path = f"{tmp}/model.pt"
            save_model(model_path, VAE())
        init_ray(extra_cpus=workers)
        options = GenerateOptions(split=split, num_styles=num_styles, num_workers=workers)
        started = time.perf_counter()
        manifest = run_generation(model_path, sources, f"{tmp}/out", options)
        job_seconds = time.perf_counter() - started
    job_rate = manifest["rows"] / job_seconds
    batch = options.styles_per_batch * NUM_CLASSES
    plain_rate = plain_decode_per_second(VAE().eval(), manifest["rows"], batch, threads=workers)
    ratio = job_rate / plain_rate
    print(f"{manifest['rows']:,} characters in {manifest['styles']:,} styles, {workers} actor(s) / thread(s), batch {batch} images")
    print(f"job (read, encode, decode, PNG, parquet): {job_rate:,.0f} chars/s ({job_seconds:.1f} s)")
    print(f"plain decode over in-memory tensors:      {plain_rate:,.0f} chars/s")
    print(f"ratio job / plain: {ratio:.2f} (target >= 0.80: {'MET' if ratio >= 0.8 else 'MISSED'})")
    if out:
        with open(out, "w") as f:
            json.dump({"rows": manifest["rows"], "workers": workers, "job_per_second": job_rate, "plain_per_second": plain_rate, "ratio": ratio}, f, indent=2)


if __name__ == "__main__":
    typer.run(main)
