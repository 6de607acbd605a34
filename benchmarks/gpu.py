"""The GPU path, measured side by side in one run: `handvae train --use-gpu` (fp32 and --bf16) and
`handvae generate --use-gpu` against plain single-GPU PyTorch doing the same work.

    python benchmarks/gpu.py --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv"      # on a machine with a GPU
    python benchmarks/gpu.py --dry-run                                          # CPU, tiny: checks the script

In this one run, on the given data (the bundled sample without data flags):
- training: the plain loop is `handvae.model.steps.train_epoch` in this process on one GPU, with the train set
  resident on the GPU (uint8) and the default recipe's model, loss and per-GPU batch; `handvae train`
  is `run_training` with the default recipe, `--use-gpu --num-workers 1` (the same per-GPU batch),
  as the command builds it. Images/s: median over the epochs after the first (warm-up), the job's
  from its metrics.jsonl (the workers' epoch loop). Target: job / plain >= 0.8, fp32 and bf16.
- the GPU's busy share while each training job runs (NVML's utilization, sampled every 0.2 s through
  pynvml or nvidia-smi; from its first busy sample to its last, so not the job's start-up);
- the accuracy reached: each job's last test accuracy and the plain loop's after as many epochs
  (the README's CPU figures are the default recipe's after its 15 epochs);
- generation: `run_generation --use-gpu` (every-style, all 36 characters, one GPU actor), its
  rate from the write's start (as its progress line prints it), against a plain GPU decode of
  random latents in batches of styles_per_batch x 36, copied to the host and PNG-encoded with the
  same encoder in this process. Target: job / plain >= 0.9.

--dry-run: CPU, the bundled sample unless data flags are given, a tiny model, 2 epochs and 40
styles; bf16 (GPU only) left out. It checks that the script runs end to end, not any figure.
"""

import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace

import torch
import typer

from handvae.data.images import encode_pngs
from handvae.data.sources import DataSources, read_split, to_tensors
from handvae.generate.driver import GenerateOptions, run_generation
from handvae.labels import NUM_CLASSES
from handvae.model.steps import epoch_figures, evaluate_batches, train_epoch
from handvae.model.vae import VAE, VAEConfig
from handvae.runtime import init_ray
from handvae.train.config import resolve_config
from handvae.train.driver import run_training

TRAIN_TARGET, GENERATE_TARGET = 0.8, 0.9
DRY_RUN_MODEL = VAEConfig(num_filters=4, num_latent=3, detail_latent=2)


class GpuBusy:
    """The GPU's utilization (percent of time a kernel ran) sampled every 0.2 s by a thread,
    through pynvml, else nvidia-smi; `share` is None where neither is there."""

    def __init__(self):
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.read = self._reader()

    @staticmethod
    def _reader():
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except ImportError:
            pass
        except pynvml.NVMLError:  # no NVIDIA driver
            pass
        if shutil.which("nvidia-smi") and torch.cuda.is_available():
            query = ["nvidia-smi", "--id=0", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            return lambda: float(subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip())
        return None

    def __enter__(self):
        if self.read:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.2):
            self.samples.append(self.read())

    def __exit__(self, *exc):
        self.stop.set()
        if self.read:
            self.thread.join()

    @property
    def share(self) -> float | None:
        busy = [i for i, value in enumerate(self.samples) if value > 0]
        return statistics.mean(self.samples[busy[0] : busy[-1] + 1]) / 100 if busy else None


@contextlib.contextmanager
def one_thread():
    """The plain loops run on one CPU thread, as a Ray worker does (OMP_NUM_THREADS=1): on a GPU it
    only launches the kernels; in a dry run it keeps the comparison per core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def plain_training(config, train: tuple, test: tuple, device: torch.device) -> tuple[float, float]:
    """(images/s, median over epochs after the first; last test accuracy): the recipe's model and
    step on one device, the data resident there."""
    torch.manual_seed(config.seed)
    model = VAE(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    images, labels = (t.to(device) for t in train)
    test_images, test_labels = (t.to(device) for t in test)
    rates, accuracy = [], float("nan")
    for epoch in range(1, config.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(epoch)
        order = torch.randperm(len(labels), device=device)
        started = time.perf_counter()
        train_sums = train_epoch(
            model, optimizer, images, labels, order, epoch, config
        )  # ends with a copy to the host: synchronised
        rates.append(len(labels) / (time.perf_counter() - started))
        batches = ((test_images[s : s + 1024], test_labels[s : s + 1024]) for s in range(0, len(test_labels), 1024))
        accuracy = epoch_figures(train_sums, evaluate_batches(model, batches))["test_accuracy"]
    return statistics.median(rates[1:] or rates), accuracy


def plain_generation(model: VAE, characters: int, batch: int, device: torch.device) -> float:
    """Characters/s of a decode on the device, copied to the host and PNG-encoded: best of 3."""
    model = model.to(device).eval()
    z = torch.randn(batch, model.config.num_latent, device=device)
    one_hot = torch.nn.functional.one_hot(torch.arange(batch, device=device) % NUM_CLASSES, NUM_CLASSES).float()
    rates = []
    with torch.no_grad():
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(0, characters, batch):
                encode_pngs(
                    model.decode(z, one_hot).sigmoid().mul(255).round().to(torch.uint8).squeeze(1).cpu().numpy()
                )
            rates.append(-(-characters // batch) * batch / (time.perf_counter() - started))
    return max(rates)


@contextlib.contextmanager
def progress_rate():
    """The rate on the job's last progress line ("generated N/N (100%), R/s, in ..."), from stderr."""
    seen = {}
    real = sys.stderr

    class Tee:
        def write(self, text):
            if text.startswith("generated ") and "/s, in " in text:
                seen["rate"] = float(text.split(", ")[1].removesuffix("/s").replace(",", ""))
            return real.write(text)

        def flush(self):
            real.flush()

    sys.stderr = Tee()
    try:
        yield seen
    finally:
        sys.stderr = real


def ratio_line(name: str, job: float, plain: float, target: float, unit: str) -> str:
    ratio = job / plain
    return f"{name:<22} {job:>12,.0f} {plain:>12,.0f} {ratio:>7.2f}x  (target >= {target}: {'MET' if ratio >= target else 'MISSED'}) {unit}"


def main(
    letters_csv: str | None = None,
    mnist_dir: str | None = None,
    epochs: int | None = typer.Option(None, help="Training epochs (default: the recipe's; the first is warm-up)."),
    num_styles: int = typer.Option(2000, help="Styles of the generation job, each drawn as all 36 characters."),
    dry_run: bool = typer.Option(False, "--dry-run", help="CPU, tiny sizes: check the script end to end."),
):
    use_gpu = not dry_run
    if use_gpu and not torch.cuda.is_available():
        raise typer.BadParameter("no CUDA GPU here; --dry-run runs the script on the CPU")
    device = torch.device("cuda" if use_gpu else "cpu")
    sources = DataSources(letters_csv=letters_csv, mnist_dir=mnist_dir)
    recipe = resolve_config(
        overrides={"num_workers": 1, "use_gpu": use_gpu, "report": False, "epochs": epochs or (2 if dry_run else None)}
    )
    if dry_run:
        recipe, num_styles = replace(recipe, model=DRY_RUN_MODEL), min(num_styles, 40)
    init_ray(extra_cpus=1)
    train, test = (to_tensors(read_split(sources, split)) for split in ("train", "test"))
    print(
        f"{len(train[1]):,} train and {len(test[1]):,} test images; {recipe.epochs} epochs, batch {recipe.batch_size} per GPU; "
        f"{torch.cuda.get_device_name(0) if use_gpu else 'CPU (dry run)'}",
        flush=True,
    )

    rows, accuracies, busy, models = [], {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16") if use_gpu else ("fp32",):
            config = replace(recipe, bf16=precision == "bf16")
            with one_thread():
                plain_rate, accuracies[f"plain {precision}"] = plain_training(config, train, test, device)
            with GpuBusy() as meter:
                result = run_training(config, sources, f"gpu-{precision}", tmp)
            job_rate = statistics.median(
                [r["images_per_second"] for r in result.metrics][1:] or [result.metrics[0]["images_per_second"]]
            )
            accuracies[f"handvae train {precision}"] = result.metrics[-1]["test_accuracy"]
            busy[precision] = meter.share
            rows.append(ratio_line(f"train {precision}", job_rate, plain_rate, TRAIN_TARGET, "training images/s"))
            models[precision] = result.model_path

        options = GenerateOptions(pairing="every-style", num_styles=num_styles, num_workers=1, use_gpu=use_gpu)
        with progress_rate() as seen:
            manifest = run_generation(models["fp32"], sources, f"{tmp}/generated", options)
        with one_thread():
            plain = plain_generation(
                VAE(recipe.model), manifest["rows"], options.styles_per_batch * NUM_CLASSES, device
            )
        rows.append(
            ratio_line("generate", seen["rate"], plain, GENERATE_TARGET, f"characters/s ({manifest['rows']:,})")
        )

    print(f"\n{'':<22} {'handvae':>12} {'plain':>12} {'ratio':>8}")
    print("\n".join(rows))
    print(
        "GPU busy while training: "
        + ", ".join(f"{p} {'n/a (no NVML)' if s is None else f'{s:.0%}'}" for p, s in busy.items())
    )
    print(
        "test accuracy after the last epoch: " + ", ".join(f"{name} {value:.2%}" for name, value in accuracies.items())
    )


if __name__ == "__main__":
    typer.run(main)
