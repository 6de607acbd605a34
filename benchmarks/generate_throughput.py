"""Generation throughput: the `handvae generate` job against a plain decode + PNG encode in one
process, the driver's share of the job's CPU, 1 actor against 2, and the raw pixels against PNGs.

    python benchmarks/generate_throughput.py                                               # bundled sample's test styles
    python benchmarks/generate_throughput.py --mnist-dir ../shared/data/mnist              # 360,000 characters
    python benchmarks/generate_throughput.py --mnist-dir ../shared/data/mnist --split train  # 2,160,000

In this one run:
- the job: `run_generation` (read the styles, encode, decode all 36 characters, PNG-encode, the
  workers write parquet, the driver commits) with 1 and then 2 model actors of one thread each
  (`--workers`), timed after Ray has started; its rate, and its CPU time sampled from /proc: the
  driver process's own, against the whole job's (the driver, Ray's gcs and raylet, the workers and
  actors). Target: the driver <= 5% of the job.
- the plain loop: the model's decode over in-memory latents and one-hot labels, the same batch
  (styles_per_batch x 36 images), the classifier over the drawn images (the `label_probs` column),
  then the same PNG encoder, in this process with one model thread (one actor's). Its rate is the
  best of 3 passes over up to 200,000 images. Target: job (1 actor) / plain >= 0.9.
- the model actor's class (`Drawer`) called in this process, without Ray, on the same batches: the
  job / plain ratio split into what the actor adds per batch and what running as a Ray job costs.
- the job with 1 actor again, `--no-label-probs`: what the `label_probs` column costs.
- reading the first file back: decoding its `pixels` column with numpy against decoding its PNGs
  with PIL, and the two columns' compressed sizes in the file.
The job's rate includes its start (Ray's worker processes importing torch, reading the styles,
starting the actors: ~8 s on 2 cores), so it rises with the size of the run.
"""

import io
import json
import os
import tempfile
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import torch
import typer
from PIL import Image

from handvae.data.images import encode_pngs
from handvae.data.sources import DataSources
from handvae.formats.model_file import save_model
from handvae.generate.driver import GenerateOptions, run_generation
from handvae.generate.worker import Drawer
from handvae.inference import load_checked_model
from handvae.labels import NUM_CLASSES
from handvae.model.drawing import Drawing, class_probabilities
from handvae.model.vae import VAE
from handvae.runtime import init_ray
from handvae.train.config import resolve_config


class CpuMeter:
    """CPU seconds of this process and of every process under it (Ray's gcs and raylet, the workers
    and actors), sampled from /proc every 0.2 s by a thread: a worker that ends between two samples
    loses at most its last 0.2 s. The thread's own CPU is not counted as the driver's."""

    def __init__(self):
        self.last: dict[int, float] = {}
        self.own = 0.0
        self.stop = threading.Event()

    def sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        processes = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue  # ended meanwhile
                fields = stat[stat.rindex(")") + 2 :].split()
                processes[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        tree, grown = {os.getpid()}, True
        while grown:
            more = {pid for pid, (parent, _) in processes.items() if parent in tree} - tree
            tree |= more
            grown = bool(more)
        for pid in tree:
            self.last[pid] = processes[pid][1]

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.sample()
        self.own = time.thread_time()

    def __enter__(self):
        self.sample()
        self.before = dict(self.last)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.sample()
        me = os.getpid()
        self.driver = self.last[me] - self.before[me] - self.own
        self.total = sum(cpu - self.before.get(pid, 0.0) for pid, cpu in self.last.items()) - self.own


def run_job(model_path: str, sources: DataSources, out: str, options: GenerateOptions) -> dict:
    started = time.perf_counter()
    with CpuMeter() as cpu:
        manifest = run_generation(model_path, sources, out, options)
    seconds = time.perf_counter() - started
    return {
        "rows": manifest["rows"],
        "styles": manifest["styles"],
        "seconds": seconds,
        "per_second": manifest["rows"] / seconds,
        "driver_cpu_s": cpu.driver,
        "job_cpu_s": cpu.total,
        "driver_share": cpu.driver / cpu.total,
        "first_file": os.path.join(out, manifest["files"][0]),
    }


def plain_per_second(model: VAE, images: int, batch: int, repeats: int = 3) -> float:
    """The job's work per character in this process, one model thread: decode, the classifier's
    probabilities of the drawn images (`label_probs`), PNG encode."""
    images = min(images, 200_000)
    torch.set_num_threads(1)
    z = torch.randn(batch, model.config.num_latent)
    one_hot = torch.nn.functional.one_hot(torch.arange(batch) % NUM_CLASSES, NUM_CLASSES).float()
    rates = []
    with torch.no_grad():
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(0, images, batch):
                pixels = model.decode(z, one_hot).sigmoid().mul(255).round().to(torch.uint8).squeeze(1)
                class_probabilities(model, pixels).numpy()
                encode_pngs(pixels.numpy())
            rates.append(-(-images // batch) * batch / (time.perf_counter() - started))
    return max(rates)


def actor_per_second(
    model_path: str, options: GenerateOptions, drawing: Drawing, images: int, repeats: int = 3
) -> float:
    """The model actor's own work per character, its class called in this process with no Ray in
    between (encode the styles, draw, `label_probs`, build the rows' table), one thread (an actor's
    outside Ray), on random style images (speed does not depend on them). Against the plain loop:
    what the actor adds per batch; the job against this: what running it as a Ray job costs on these
    cores."""
    drawer = Drawer(model_path, False, options, drawing)
    count = options.styles_per_batch
    batch = {
        "style_id": np.arange(count, dtype=np.int64),
        "source": np.full(count, "mnist"),
        "row": np.arange(count, dtype=np.int64),
        "image": np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8),
    }
    calls = max(1, min(images, 200_000) // (count * options.per_style))
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        rows = sum(drawer(batch).num_rows for _ in range(calls))
        rates.append(rows / (time.perf_counter() - started))
    return max(rates)


def decode_costs(path: str) -> dict:
    """Seconds per image to get numpy arrays from each image column of one file, and its bytes."""
    parquet = pq.ParquetFile(path)
    table = parquet.read(columns=["pixels", "image"])
    pixels = table.column("pixels").combine_chunks()
    started = time.perf_counter()
    arrays = np.frombuffer(pixels.buffers()[1], np.uint8, count=len(pixels) * 784, offset=pixels.offset * 784).reshape(
        -1, 28, 28
    )
    numpy_s = time.perf_counter() - started
    pngs = table.column("image").combine_chunks().field("bytes").to_pylist()
    started = time.perf_counter()
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(png))) for png in pngs])
    png_s = time.perf_counter() - started
    assert np.array_equal(arrays, decoded)
    sizes = {}
    for group in range(parquet.metadata.num_row_groups):
        for index in range(parquet.metadata.num_columns):
            column = parquet.metadata.row_group(group).column(index)
            top = column.path_in_schema.split(".")[0]
            sizes[top] = sizes.get(top, 0) + column.total_compressed_size
    return {
        "images": len(pngs),
        "numpy_s_per_image": numpy_s / len(pngs),
        "png_s_per_image": png_s / len(pngs),
        "pixels_bytes_per_image": sizes["pixels"] / len(pngs),
        "image_bytes_per_image": sizes["image"] / len(pngs),
    }


def main(
    model_path: str | None = typer.Option(
        None,
        "--model",
        help="A model file (default: an untrained model of the default recipe's shape; speed does not depend on weights).",
    ),
    letters_csv: str | None = None,
    mnist_dir: str | None = None,
    split: str = typer.Option("test", help="The split whose images give the styles."),
    num_styles: int | None = typer.Option(None, help="Styles (default: all of the split)."),
    workers: list[int] = typer.Option([1, 2], help="Model actors of one thread each; one job per value."),
    out: str | None = typer.Option(None, help="Also write the figures as JSON here."),
):
    sources = DataSources(letters_csv=letters_csv, mnist_dir=mnist_dir)
    figures: dict = {"jobs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if model_path is None:
            torch.manual_seed(0)
            model_path = f"{tmp}/model.pt"
            save_model(model_path, VAE(resolve_config().model))
        init_ray(extra_cpus=max(workers))
        for count in workers:
            job = run_job(
                model_path,
                sources,
                f"{tmp}/out-{count}",
                GenerateOptions(split=split, pairing="every-style", num_styles=num_styles, num_workers=count),
            )
            figures["jobs"][count] = job
            print(
                f"job, {count} actor(s): {job['rows']:,} characters in {job['styles']:,} styles, {job['per_second']:,.0f} chars/s "
                f"({job['seconds']:.1f} s); CPU: driver {job['driver_cpu_s']:.1f} s of the job's {job['job_cpu_s']:.1f} s = "
                f"{job['driver_share']:.1%} (target <= 5%: {'MET' if job['driver_share'] <= 0.05 else 'MISSED'})",
                flush=True,
            )
        figures["decode"] = decode_costs(next(iter(figures["jobs"].values()))["first_file"])
        bare = GenerateOptions(
            split=split, pairing="every-style", num_styles=num_styles, num_workers=workers[0], label_probs=False
        )
        figures["without_label_probs"] = run_job(model_path, sources, f"{tmp}/out-bare", bare)
        first = figures["jobs"][workers[0]]
        batch = GenerateOptions().styles_per_batch * NUM_CLASSES
        model, metadata = load_checked_model(model_path)  # the job's own model: the same work
        figures["plain_per_second"] = plain_per_second(model, first["rows"], batch)
        one_actor = GenerateOptions(split=split, pairing="every-style", num_workers=workers[0])
        drawing = Drawing.from_metadata(metadata)
        figures["actor_per_second"] = actor_per_second(model_path, one_actor, drawing, first["rows"])
    figures["ratio"] = first["per_second"] / figures["plain_per_second"]
    print(
        f"plain decode + classifier + PNG encode, 1 thread, in-memory latents: {figures['plain_per_second']:,.0f} chars/s"
    )
    print(
        f"ratio job ({workers[0]} actor) / plain: {figures['ratio']:.2f} (target >= 0.90: {'MET' if figures['ratio'] >= 0.9 else 'MISSED'})"
    )
    actor = figures["actor_per_second"]
    print(
        f"the model actor's work called in this process (no Ray): {actor:,.0f} chars/s, {actor / figures['plain_per_second']:.2f}x "
        f"of plain; the job {first['per_second'] / actor:.2f}x of that"
    )
    if len(workers) > 1:
        rates = [figures["jobs"][count]["per_second"] for count in workers]
        print(
            "actors: "
            + ", ".join(f"{count}: {rate:,.0f}/s" for count, rate in zip(workers, rates))
            + f" ({rates[-1] / rates[0]:.2f}x)"
        )
    with_probs, bare = figures["jobs"][workers[0]]["per_second"], figures["without_label_probs"]["per_second"]
    print(
        f"job, {workers[0]} actor(s), --no-label-probs: {bare:,.0f} chars/s; with label_probs {with_probs / bare:.2f}x of that"
    )
    d = figures["decode"]
    print(
        f"reading {d['images']:,} images of one file: numpy from `pixels` {d['numpy_s_per_image'] * 1e9:,.0f} ns/image, PIL from "
        f"PNGs {d['png_s_per_image'] * 1e6:,.1f} us/image ({d['png_s_per_image'] / d['numpy_s_per_image']:,.0f}x); compressed "
        f"bytes/image: pixels {d['pixels_bytes_per_image']:.0f}, image {d['image_bytes_per_image']:.0f}"
    )
    if out:
        with open(out, "w") as f:
            json.dump(figures, f, indent=2, default=str)


if __name__ == "__main__":
    typer.run(main)
