"""Streaming training benchmark: memory against data set size, and speed against the in-memory path.

Run (from the repo root, venv active; about 15-25 minutes on a 2-core machine):

    python benchmarks/streaming.py --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --work-dir /tmp/handvae-streaming

What it does, in one run (every training run is `handvae train` in a fresh subprocess, measured
from outside by `process_memory.run_measured`: PSS summed over the whole process tree, Ray's
processes and the object store included):
1. Generates 18,000 characters with `handvae generate`'s library function from a freshly
   initialised model (the data only needs the format): 500 styles of the bundled sample x 36. The
   large set (1,008,000) is those characters tiled --tiles (56) times, each copy moved by its own
   pixel offset so that no two rows are equal, written in the layout `handvae generate` writes
   (contract 4: parquet files listed in manifest.json, `_SUCCESS`; files of 100,800 rows in row
   groups of 2,304, as generation writes them). Generating it directly took 10 GB in a decoding
   actor at 56 draws per style, and ~16 minutes on this shared 2-core machine. Existing complete
   folders are reused.
2. Trains one epoch on each with 2 workers, streaming (`--data-feed stream`; a small model,
   num_filters 8 and num_latent 4, at batch 256, so that the data path dominates), and reports the
   peak memory of each and the excess of the large over the small run, against the large set's
   pixel bytes. Target: excess < 0.5x (a full copy per worker would be over 2x).
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

STYLES = 500
TARGET_EXCESS = 0.5
TARGET_SPEED = 0.9


def generate(out: str, seed: int = 0) -> dict:
    """A generated folder from a freshly initialised model (reused when complete)."""
    if os.path.exists(os.path.join(out, "_SUCCESS")):
        print(f"[data] reusing {out}", flush=True)
        return {"path": out, "reused": True}
    import torch

    from handvae.data.sources import DataSources
    from handvae.formats.model_file import save_model
    from handvae.generate.driver import GenerateOptions, run_generation
    from handvae.model.vae import VAE

    torch.manual_seed(seed)
    model_path = f"{out}.model.pt"
    save_model(model_path, VAE())
    started = time.perf_counter()
    manifest = run_generation(
        model_path,
        DataSources(),
        out,
        GenerateOptions(split="train", pairing="every-style", num_styles=STYLES, seed=seed),
    )
    seconds = time.perf_counter() - started
    print(f"[data] generated {manifest['rows']:,} characters into {out} in {seconds:.0f} s", flush=True)
    return {"path": out, "rows": manifest["rows"], "seconds": seconds, "reused": False}


def tile(small: str, out: str, tiles: int, row_group: int = 2304, file_rows: int = 100_800) -> dict:
    """The small generated set `tiles` times, copy k shifted by (k % 7 - 3, k // 7 % 7 - 3) pixels."""
    if os.path.exists(os.path.join(out, "_SUCCESS")):
        print(f"[data] reusing {out}", flush=True)
        return {"path": out, "reused": True}
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    table = pads.dataset(small, format="parquet", exclude_invalid_files=True).to_table(columns=["label", "pixels"])
    images = np.frombuffer(table.column("pixels").combine_chunks().buffers()[1], np.uint8).reshape(-1, 28, 28)
    labels = table.column("label").to_numpy()
    staging = f"{out}.tmp"
    os.makedirs(staging, exist_ok=True)
    files, rows = [], []
    for k in range(tiles):
        moved = np.roll(images, (k % 7 - 3, k // 7 % 7 - 3), axis=(1, 2))
        rows.append(
            pa.table(
                {
                    "label": pa.array(labels),
                    "pixels": pa.FixedSizeBinaryArray.from_buffers(
                        pa.binary(784), len(labels), [None, pa.py_buffer(moved.tobytes())]
                    ),
                }
            )
        )
    whole = pa.concat_tables(rows)
    for index, start in enumerate(range(0, whole.num_rows, file_rows)):
        name = f"data/part-{index:05d}.parquet"
        os.makedirs(os.path.join(staging, "data"), exist_ok=True)
        pq.write_table(
            whole.slice(start, file_rows), os.path.join(staging, name), row_group_size=row_group, compression="zstd"
        )
        files.append(name)
    with open(os.path.join(staging, "manifest.json"), "w") as f:
        json.dump(
            {
                "format": "handvae.generated",
                "files": files,
                "rows": whole.num_rows,
                "tiled_from": small,
                "tiles": tiles,
            },
            f,
        )
    open(os.path.join(staging, "_SUCCESS"), "w").close()
    os.replace(staging, out)
    print(f"[data] wrote {whole.num_rows:,} characters ({tiles} shifted copies of {small}) into {out}", flush=True)
    return {"path": out, "rows": whole.num_rows, "reused": False}


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist-dir", required=True, help="real MNIST (torchvision layout), for the speed comparison")
    p.add_argument("--letters-csv", required=True, help="the real Kaggle A-Z CSV, for the speed comparison")
    p.add_argument("--work-dir", default="/tmp/handvae-streaming")
    p.add_argument(
        "--tiles",
        type=int,
        default=56,
        help="copies of the 18,000 generated characters in the large set (56: 1,008,000)",
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
        small = generate(os.path.join(a.work_dir, "generated-small"))
        large = tile(small["path"], os.path.join(a.work_dir, f"generated-large-{a.tiles}"), a.tiles)
        from handvae.data.folders import plan_folder
        from handvae.data.records import IMAGE_PIXELS

        rows = {
            name: sum(u.rows[0] + u.rows[1] for u in plan_folder(d["path"]).units)
            for name, d in (("small", small), ("large", large))
        }
        # A small model at batch 256: the data path is the same, and an epoch of a million images
        # takes minutes instead of most of an hour on 2 cores, with the reading more exposed.
        small_model = os.path.join(a.work_dir, "small-model.toml")
        with open(small_model, "w") as f:
            f.write("[model]\nnum_filters = 8\nnum_latent = 4\n")
        extra = ("--config", small_model, "--batch-size", "256")
        runs = {
            name: train(f"stream-{name}", d["path"], "stream", 1, storage, a.sample_every, extra)
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
