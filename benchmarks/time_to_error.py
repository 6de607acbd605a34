"""Time to a clear error: bad inputs that need no data read, each as a whole `handvae` process.

Run (from the repo root, venv active; about a minute on a 2-core machine):

    python benchmarks/time_to_error.py [--repeat 1] [--work-dir /tmp/handvae-time-to-error]

Each case is a command a user may type with one bad input: an empty or missing path, a path of the
wrong kind, an empty or binary CSV, a flag out of range, a config weight that cannot be a weight,
an output that cannot be written. For each it starts `python -m handvae.cli ...` in a fresh
process, and measures the wall time until it exits; it checks that the exit status is 2 and that
stderr is one `error:` line (no traceback). These are refused before Ray starts, so none should
take more than the imports. Target: the median under 3 s (issue 34; 20-30 s when Ray started first).
It also prints each process's CPU time (user + system), which a busy machine inflates far less
than the wall time: on a shared machine, read the two together.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

TARGET_MEDIAN_S = 3.0


def fixtures(work: str) -> dict[str, str]:
    """Files the cases point at: a model, an empty and a binary CSV, a config with an inf weight."""
    import torch

    from handvae.formats.model_file import save_model
    from handvae.model.vae import VAE, VAEConfig

    os.makedirs(work, exist_ok=True)
    paths = {name: os.path.join(work, name) for name in ("model.pt", "empty.csv", "binary.csv", "inf.toml", "folder")}
    torch.manual_seed(0)
    save_model(paths["model.pt"], VAE(VAEConfig(num_filters=4, num_latent=3)))
    open(paths["empty.csv"], "wb").close()
    with open(paths["binary.csv"], "wb") as f:
        f.write(bytes(range(256)) * 64)
    with open(paths["inf.toml"], "w") as f:
        f.write("[loss]\ncat_weight = inf\n")
    os.makedirs(paths["folder"], exist_ok=True)
    return paths


def cases(p: dict[str, str], work: str) -> list[tuple[str, list[str]]]:
    out = os.path.join(work, "out")
    runs = ["--storage-path", os.path.join(work, "runs")]
    return [
        ("data: empty --letters-csv", ["data", "--letters-csv", ""]),
        ("data: missing --letters-csv", ["data", "--letters-csv", os.path.join(work, "missing.csv")]),
        ("data: empty CSV", ["data", "--letters-csv", p["empty.csv"]]),
        ("data: binary file as CSV", ["data", "--letters-csv", p["binary.csv"]]),
        ("data: empty --dataset", ["data", "--dataset", ""]),
        ("train: empty --dataset", ["train", "--dataset", "", *runs]),
        ("train: --seed 2**64", ["train", "--seed", str(2**64), *runs]),
        ("train: --epochs 0", ["train", "--epochs", "0", *runs]),
        ("train: cat_weight = inf", ["train", "--config", p["inf.toml"], *runs]),
        ("train: read-only --storage-path", ["train", "--storage-path", "/proc/handvae-runs"]),
        ("evaluate: folder as --model", ["evaluate", "--model", p["folder"], "--out", out]),
        ("evaluate: empty --out", ["evaluate", "--model", p["model.pt"], "--out", ""]),
        ("generate: missing --model", ["generate", "--model", os.path.join(work, "missing.pt"), "--out", out]),
        (
            "generate: --num-styles 10**30",
            ["generate", "--model", p["model.pt"], "--out", out, "--num-styles", str(10**30)],
        ),
        ("generate: duplicate --chars", ["generate", "--model", p["model.pt"], "--out", out, "--chars", "AAB"]),
        ("generate: read-only --out", ["generate", "--model", p["model.pt"], "--out", "/proc/handvae-out"]),
    ]


def time_to_error(args: list[str], timeout: float) -> tuple[float, float, int | None, str]:
    """(wall seconds, CPU seconds, exit status, stderr); a command still running after `timeout` is
    stopped (status None)."""
    started, cpu = time.perf_counter(), _children_cpu()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "handvae.cli", *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, _children_cpu() - cpu, None, f"still running after {timeout:.0f} s"
    return time.perf_counter() - started, _children_cpu() - cpu, done.returncode, done.stderr.strip()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/handvae-time-to-error")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case; its median counts")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds after which a case is stopped (and counted at that)"
    )
    options = parser.parse_args()
    work = os.path.abspath(options.work_dir)
    paths = fixtures(work)
    medians, cpus, unclear = [], [], []
    for name, args in cases(paths, work):
        runs = [time_to_error(args, options.timeout) for _ in range(options.repeat)]
        seconds, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        _, _, status, stderr = runs[-1]
        clear = status == 2 and len(stderr.splitlines()) == 1 and stderr.startswith("error: ")
        medians.append(seconds)
        cpus.append(cpu)
        if not clear:
            unclear.append(name)
        message = stderr.splitlines()[-1] if stderr else "(no message)"
        print(f"{seconds:6.2f} s  cpu {cpu:5.2f} s  exit {status}  {name}: {message}"[:220], flush=True)
    median = statistics.median(medians)
    print(
        f"\nmedian time to error over {len(medians)} bad inputs: {median:.2f} s (target < {TARGET_MEDIAN_S:.0f} s: "
        f"{'met' if median < TARGET_MEDIAN_S else 'NOT met'}); max {max(medians):.2f} s; median CPU time "
        f"{statistics.median(cpus):.2f} s; load average {os.getloadavg()[0]:.1f} at the end"
    )
    if unclear:
        print(f"not one clear `error:` line with exit status 2: {', '.join(unclear)}")


if __name__ == "__main__":
    main()
