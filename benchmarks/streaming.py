"""Streaming training benchmark: memory against data set size, and speed against the in-memory path.

Run (from the repo root, venv active; on a 2-core machine with another job on one core, the memory part
took 30 minutes, most of it the large set's epoch, 825,844 images at the default batch 32):

    python benchmarks/streaming.py --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --work-dir /tmp/handvae-streaming

What it does, in one run (every training run is `handvae train` in a fresh subprocess, measured
from outside by `process_memory.run_measured`: PSS summed over the whole process tree, Ray's
processes and the object store included):
1. Writes two data sets with `handvae generate` itself, from a freshly initialised model of the
   default recipe's sizes (the data only needs the format), as a user writes them: a small one,
   --small-styles (500) styles of the bundled sample's train split x 36 characters (18,000), and a
   large one, every style of that split (2,868) x 36 characters x --large-samples draws per
   style (10: 1,032,480 characters, 809 MB of pixels; `--pairing every-style --samples-per-style
   10`). Existing complete folders are reused.
2. Trains one epoch on each as a user would, the default recipe with 2 workers, streamed
   (`--data-feed stream`, what auto picks above 512 MiB), `--no-report`, and reports the peak
   memory of each and the excess of the large over the small run, against the large set's pixel
   bytes, and where the excess is: each process role's PSS at the two peaks (the command, each
   Ray actor class, Ray's daemons; `process_memory.py`), the PSS by role every 10 s in --out.
   Target: excess < 0.5x (a full copy per worker would be over 2x).
3. Prepares the real data (MNIST + the Kaggle letters) once with `handvae prepare`, then trains
   --epochs epochs on it with 2 workers streaming and in memory, and compares training images/s
   (median over the epochs after the first, from metrics.jsonl). Target: streaming >= 0.9x.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from process_memory import run_measured

TARGET_EXCESS = 0.5
TARGET_SPEED = 0.9


def generate(out: str, model_path: str, flags: tuple[str, ...]) -> dict:
    """A data set written by `handvae generate` in a fresh process (reused when complete)."""
    if os.path.exists(os.path.join(out, "_SUCCESS")):
        print(f"[data] reusing {out}", flush=True)
        return {"path": out, "reused": True}
    if not os.path.exists(model_path):
        import torch

        from handvae.formats.model_file import save_model
        from handvae.model.vae import VAE
        from handvae.train.config import resolve_config

        torch.manual_seed(0)
        save_model(model_path, VAE(resolve_config().model))  # the default recipe's sizes
    started = time.perf_counter()
    command = [sys.executable, "-m", "handvae.cli", "generate", "--model", model_path, "--out", out, "--split", "train"]
    subprocess.run([*command, "--pairing", "every-style", "--seed", "3", *flags], check=True)
    seconds = time.perf_counter() - started
    print(f"[data] generated {out} in {seconds:.0f} s", flush=True)
    return {"path": out, "seconds": seconds, "reused": False}


def train(
    label: str, dataset: str, feed: str, epochs: int, storage: str, sample_every: float, extra: tuple[str, ...] = ()
) -> dict:
    """`handvae train` in a fresh process, measured; adds its metrics.jsonl records."""
    run_name = f"{label}-{int(time.time())}"
    command = [
        sys.executable,
        "-m",
        "handvae.cli",
        "train",
        "--dataset",
        dataset,
        "--data-feed",
        feed,
        "--epochs",
        str(epochs),
        "--num-workers",
        "2",
        "--no-report",
        "--storage-path",
        storage,
        "--run-name",
        run_name,
        *extra,
    ]
    result = run_measured(command, sample_every, label)
    with open(os.path.join(storage, run_name, "metrics.jsonl")) as f:
        result["records"] = [json.loads(line) for line in f]
    result["command"] = " ".join(command)
    return result


def _print_excess_by_role(small: dict, large: dict) -> None:
    """Where the excess is: each role's PSS at the tree's peak, and its processes' own peaks, small
    against large (a process's peak may come at another moment than the tree's)."""

    def own_peaks(run: dict) -> dict[str, float]:
        peaks: dict[str, float] = {}
        for process in run["process_peaks_mb"]:
            peaks[process["role"]] = peaks.get(process["role"], 0.0) + process["peak_pss_mb"]
        return peaks

    at_peak = {name: run["peak_breakdown_mb"] for name, run in (("small", small), ("large", large))}
    peaks = {"small": own_peaks(small), "large": own_peaks(large)}
    roles = sorted(set(at_peak["small"]) | set(at_peak["large"]), key=lambda r: -at_peak["large"].get(r, 0.0))
    print("by process role, MB (at the tree's peak: small, large, difference | each process's own peak: small, large)")
    for role in roles:
        small_mb, large_mb = at_peak["small"].get(role, 0.0), at_peak["large"].get(role, 0.0)
        if max(small_mb, large_mb) >= 20:
            print(
                f"  {role:<34} {small_mb:7,.0f} {large_mb:7,.0f} {large_mb - small_mb:+7,.0f} | "
                f"{peaks['small'].get(role, 0.0):7,.0f} {peaks['large'].get(role, 0.0):7,.0f}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist-dir", required=True, help="real MNIST (torchvision layout), for the speed comparison")
    p.add_argument("--letters-csv", required=True, help="the real Kaggle A-Z CSV, for the speed comparison")
    p.add_argument("--work-dir", default="/tmp/handvae-streaming")
    p.add_argument("--small-styles", type=int, default=500, help="styles of the small set (x 36 characters)")
    p.add_argument(
        "--large-samples", type=int, default=10, help="draws per style of the large set (10: 1,032,480 characters)"
    )
    p.add_argument("--epochs", type=int, default=2, help="epochs of each real-data run (the first is warm-up)")
    p.add_argument("--sample-every", type=float, default=0.25, help="seconds between memory samples")
    p.add_argument("--skip", nargs="*", default=[], choices=["memory", "speed"])
    p.add_argument("--out", help="also write the figures as JSON here")
    a = p.parse_args()
    os.makedirs(a.work_dir, exist_ok=True)
    storage = os.path.join(a.work_dir, "runs")
    figures: dict = {"cpus": os.cpu_count()}

    if "memory" not in a.skip:
        model = os.path.join(a.work_dir, "default-recipe-model.pt")
        small = generate(
            os.path.join(a.work_dir, f"generated-{a.small_styles}-styles"), model, ("--num-styles", str(a.small_styles))
        )
        large = generate(
            os.path.join(a.work_dir, f"generated-every-style-x{a.large_samples}"),
            model,
            ("--samples-per-style", str(a.large_samples)),
        )
        from handvae.data.folders import plan_folder
        from handvae.data.records import IMAGE_PIXELS

        rows = {
            name: sum(u.rows[0] + u.rows[1] for u in plan_folder(d["path"]).units)
            for name, d in (("small", small), ("large", large))
        }
        runs = {
            name: train(f"stream-{name}", d["path"], "stream", 1, storage, a.sample_every)
            for name, d in (("small", small), ("large", large))
        }
        pixel_bytes = rows["large"] * IMAGE_PIXELS
        excess = runs["large"]["peak_pss_mb"] - runs["small"]["peak_pss_mb"]
        ratio = excess * 2**20 / pixel_bytes
        figures["memory"] = {
            "rows": rows,
            "runs": runs,
            "excess_mb": excess,
            "pixel_mb": pixel_bytes / 2**20,
            "ratio": ratio,
        }
        print()
        for name in ("small", "large"):
            r = runs[name]
            print(
                f"{name:>5}: {rows[name]:>9,} characters, 1 epoch streaming on 2 workers: {r['process_wall_s']:6.0f} s, peak PSS {r['peak_pss_mb']:,.0f} MB"
            )
        print(
            f"excess of the large run: {excess:,.0f} MB = {ratio:.2f}x the large set's {pixel_bytes / 2**20:,.0f} MB of pixels "
            f"(target < {TARGET_EXCESS}x: {'MET' if ratio < TARGET_EXCESS else 'MISSED'})",
            flush=True,
        )
        _print_excess_by_role(runs["small"], runs["large"])

    if "speed" not in a.skip:
        prepared = os.path.join(a.work_dir, "prepared-real")
        if not os.path.exists(os.path.join(prepared, "_SUCCESS")):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "handvae.cli",
                    "prepare",
                    "--letters-csv",
                    a.letters_csv,
                    "--mnist-dir",
                    a.mnist_dir,
                    "--out",
                    prepared,
                ],
                check=True,
            )
        speed = {
            feed: train(f"real-{feed}", prepared, feed, a.epochs, storage, a.sample_every)
            for feed in ("memory", "stream")
        }
        rates = {
            feed: statistics.median(
                [r["images_per_second"] for r in run["records"]][1:] or [run["records"][0]["images_per_second"]]
            )
            for feed, run in speed.items()
        }
        ratio = rates["stream"] / rates["memory"]
        figures["speed"] = {"runs": speed, "images_per_second": rates, "ratio": ratio}
        print()
        for feed, run in speed.items():
            per_epoch = ", ".join(f"{r['images_per_second']:,.0f}" for r in run["records"])
            print(
                f"real data, {feed:>6}: {rates[feed]:,.0f} training images/s (median of epochs 2-{a.epochs}, the default model; per epoch "
                f"{per_epoch}), whole run {run['process_wall_s']:.0f} s, peak PSS {run['peak_pss_mb']:,.0f} MB"
            )
        print(
            f"streaming / in memory: {ratio:.2f}x (target >= {TARGET_SPEED}x: {'MET' if ratio >= TARGET_SPEED else 'MISSED'})",
            flush=True,
        )
        # On a shared machine images/s follow the other processes' load; the CPU time the whole
        # process tree took for the same work (same epochs, model and data) does much less so.
        cpu = {feed: run["tree_cpu_s"] for feed, run in speed.items()}
        figures["speed"]["tree_cpu_s"] = cpu
        print(
            f"CPU time of the whole process tree for the same {a.epochs} epochs: in memory {cpu['memory']:.0f} s, streaming "
            f"{cpu['stream']:.0f} s: streaming does the work in {cpu['stream'] / cpu['memory']:.2f}x the CPU time",
            flush=True,
        )

    if a.out:
        with open(a.out, "w") as f:
            json.dump(figures, f, indent=2)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
