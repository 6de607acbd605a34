"""Ingest benchmark: the seed's pandas path against handvae's Ray Data path, on a full-size Kaggle A-Z file.

Run (from the repo root, venv active; takes several minutes on a 2-core machine):

    python benchmarks/ingest.py --csv "/work/shared/data/az_letters/A_Z Handwritten Data.csv" \
        --work-dir /tmp/handvae-bench --out /tmp/handvae-bench/ingest.json

What it does, in one run:
1. Makes a full-size file (372,450 rows, the size of the Kaggle file) by resampling the real rows of
   --csv with small random shifts (-2..2 px in x and y, zero fill, seeded), written in the Kaggle
   format (no header) to --work-dir. An existing file with the right row count is reused.
2. Reads that file into training-ready batches (float (B, 1, 28, 28) in [0, 1], int64 labels, B=256),
   each path in its own fresh subprocess:
   a. seed: pandas.read_csv(dtype=float32) -> drop/astype/divide -> torch tensors -> batches by slicing;
   b. ray: read_split(DataSources(letters_csv=...)) -> iter_torch_batches(256) -> model_inputs;
   c. prepare: handvae's prepare() to parquet, then (other subprocesses) the prepared folder ->
      batches by each of handvae's two readers of a folder:
      c2. Ray Data, read_split (evaluation, generation's styles, in-memory training);
      c3. a streaming training worker's own read (`handvae.train.worker.StreamingFeed`: pyarrow row groups,
          window-shuffled), in a Ray worker as in training, one worker whose share is every row.
   Paths b and c2 then read once more in the same process ("warm": Ray Data's workers and actors
   already started, as for every read after the first in a long-lived job).
   d. cli: `handvae data --letters-csv FILE` as a whole process, as a new user first reads the file,
   against the seed's whole process (Python start-up and imports included on both sides).
3. Samples the peak memory of each subprocess's whole tree (`process_memory.run_measured`: PSS
   summed over the process and all its descendants, Ray's included).
4. Prints a table with the ratios and the targets (>= 4x faster than seed, <= 40% of its peak memory).
   "Without Ray's start-up" is the time after ray.init; for c3 it still includes starting the Ray
   worker process and its imports (torch), which a training run pays once, not per epoch.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from process_memory import run_measured

KAGGLE_ROWS = 372_450
BATCH = 256
TARGET_SPEEDUP = 4.0
TARGET_MEMORY = 0.40


# --------------------------------------------------------------------------------------------------
# 1. The full-size file
# --------------------------------------------------------------------------------------------------


def count_lines(path: str) -> int:
    """Data lines in a file (a last line without newline counts)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while buf := f.read(16 << 20):
            lines += buf.count(b"\n")
            last = buf[-1:]
    return lines + (last != b"\n")


def load_real(path: str):
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(785)]
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.uint8() for n in names}),
    )
    return np.stack([table.column(i).to_numpy() for i in range(785)], axis=1)  # (N, 785) uint8


def shifted(images, dx, dy):
    """Each image moved by (dx, dy) pixels (per row), vacated pixels zero."""
    import numpy as np

    out = np.zeros_like(images)
    for sx in range(-2, 3):
        for sy in range(-2, 3):
            sel = np.flatnonzero((dx == sx) & (dy == sy))
            if not sel.size:
                continue
            src = images[sel]
            ys, yd = (slice(0, 28 - sy), slice(sy, 28)) if sy >= 0 else (slice(-sy, 28), slice(0, 28 + sy))
            xs, xd = (slice(0, 28 - sx), slice(sx, 28)) if sx >= 0 else (slice(-sx, 28), slice(0, 28 + sx))
            block = np.zeros_like(src)
            block[:, yd, xd] = src[:, ys, xs]
            out[sel] = block
    return out


def make_full_file(real_csv: str, path: str, rows: int, seed: int, chunk_rows: int = 16384) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if os.path.exists(path):
        t = time.perf_counter()
        found = count_lines(path)
        if found == rows:
            print(
                f"[file] reusing {path}: {found:,} rows, {os.path.getsize(path) / 1e6:,.0f} MB (counted in {time.perf_counter() - t:.1f} s)"
            )
            return {"path": path, "rows": found, "reused": True, "bytes": os.path.getsize(path)}
        print(f"[file] {path} has {found:,} rows, not {rows:,}: rewriting")
    t0 = time.perf_counter()
    real = load_real(real_csv)
    rng = np.random.default_rng(seed)
    names = [f"c{i}" for i in range(785)]
    schema = pa.schema([(n, pa.uint8()) for n in names])
    tmp = f"{path}.tmp-{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with pacsv.CSVWriter(tmp, schema, write_options=pacsv.WriteOptions(include_header=False)) as writer:
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            pick = rng.integers(0, len(real), n)
            dx, dy = rng.integers(-2, 3, n), rng.integers(-2, 3, n)
            images = shifted(real[pick, 1:].reshape(n, 28, 28), dx, dy).reshape(n, 784)
            columns = np.ascontiguousarray(np.concatenate([real[pick, :1], images], axis=1).T)
            writer.write_table(pa.Table.from_arrays([pa.array(c) for c in columns], schema=schema))
    os.replace(tmp, path)
    found = count_lines(path)
    assert found == rows, (found, rows)
    print(
        f"[file] wrote {path}: {rows:,} rows resampled (seed {seed}) from {len(real):,} real rows of {real_csv} "
        f"with -2..2 px shifts, {os.path.getsize(path) / 1e6:,.0f} MB in {time.perf_counter() - t0:.1f} s"
    )
    return {
        "path": path,
        "rows": rows,
        "reused": False,
        "bytes": os.path.getsize(path),
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------------------------------
# 2. The measured paths, each run as `ingest.py _worker MODE ...` in a fresh subprocess
# --------------------------------------------------------------------------------------------------


def worker_seed(path: str, result: dict) -> None:
    import pandas as pd
    import torch

    t0 = time.perf_counter()
    data = pd.read_csv(path, dtype="float32")
    t_read = time.perf_counter()
    X = data.drop(columns="0").astype("float32").divide(255)
    y = data["0"].astype("int64").add(10)
    X = torch.from_numpy(X.to_numpy()).reshape(-1, 1, 28, 28)  # no copy: the seed at its leanest
    y = torch.from_numpy(y.to_numpy())
    t_tensor = time.perf_counter()
    rows = 0
    for i in range(0, len(y), BATCH):
        xb, yb = X[i : i + BATCH], y[i : i + BATCH]
        assert xb.dtype == torch.float32 and xb.shape[1:] == (1, 28, 28) and yb.dtype == torch.int64
        rows += len(yb)
    t1 = time.perf_counter()
    result.update(
        rows=rows, seconds=t1 - t0, read_csv_s=t_read - t0, to_tensor_s=t_tensor - t_read, iterate_s=t1 - t_tensor
    )


def _iterate_ray(ds, result: dict) -> None:
    import torch

    from handvae.model.vae import model_inputs

    rows = 0
    first = None
    for batch in ds.select_columns(["image", "label"]).iter_torch_batches(batch_size=BATCH):
        x, y = model_inputs(batch["image"], batch["label"])
        if first is None:
            first = time.perf_counter()
            assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28) and y.dtype == torch.int64
        rows += len(y)
    result.update(rows=rows, first_batch_at=first)


def _time_warm_read(ds, result: dict) -> None:
    """The same read again in the same process: Ray Data's workers and actors are up by now, as
    they are for every read after the first in a long-lived job."""
    started = time.perf_counter()
    rows = sum(len(b["label"]) for b in ds.select_columns(["image", "label"]).iter_torch_batches(batch_size=BATCH))
    assert rows == result["rows"]
    result["warm_read_s"] = time.perf_counter() - started


def worker_ray(path: str, result: dict, chunk_bytes: int | None) -> None:
    import ray
    import torch  # noqa: F401  (before the clock starts, as the seed path's pandas and torch are)

    from handvae.data.sources import DataSources, read_split
    from handvae.runtime import init_ray

    t0 = time.perf_counter()
    init_ray()
    t_init = time.perf_counter()
    result["ray_cpus"] = ray.cluster_resources().get("CPU")
    ds = read_split(DataSources(letters_csv=path, csv_chunk_bytes=chunk_bytes), None)
    t_plan = time.perf_counter()
    _iterate_ray(ds, result)
    t1 = time.perf_counter()
    result.update(
        seconds=t1 - t_init,
        seconds_with_startup=t1 - t0,
        ray_init_s=t_init - t0,
        plan_s=t_plan - t_init,
        first_batch_s=result.pop("first_batch_at") - t_init,
        num_read_tasks=_num_chunks(path, chunk_bytes),
    )
    _time_warm_read(ds, result)
    result["stats"] = ds.stats()[-4000:] if os.environ.get("INGEST_STATS") else None
    ray.shutdown()


def _num_chunks(path: str, chunk_bytes: int | None) -> int:
    from handvae.data.kaggle_csv import default_chunk_bytes

    size = os.path.getsize(path)
    return -(-size // (chunk_bytes or default_chunk_bytes(size)))


def worker_prepare(path: str, result: dict, out_dir: str, chunk_bytes: int | None) -> None:
    import ray

    from handvae.data.prepare import prepare
    from handvae.data.sources import DataSources
    from handvae.runtime import init_ray

    t0 = time.perf_counter()
    init_ray()
    t_init = time.perf_counter()
    result["ray_cpus"] = ray.cluster_resources().get("CPU")
    manifest = prepare(DataSources(letters_csv=path, csv_chunk_bytes=chunk_bytes), out_dir, overwrite=True)
    t1 = time.perf_counter()
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out_dir) for f in fs)
    result.update(
        rows=sum(manifest["rows"].values()),
        seconds=t1 - t_init,
        seconds_with_startup=t1 - t0,
        ray_init_s=t_init - t0,
        prepared_bytes=size,
    )
    ray.shutdown()


def worker_prepared_read(out_dir: str, result: dict) -> None:
    import ray
    import torch  # noqa: F401  (before the clock starts, as the seed path's pandas and torch are)

    from handvae.data.sources import DataSources, read_split
    from handvae.runtime import init_ray

    t0 = time.perf_counter()
    init_ray()
    t_init = time.perf_counter()
    result["ray_cpus"] = ray.cluster_resources().get("CPU")
    ds = read_split(DataSources(prepared_dir=out_dir), None)
    result["parquet_files"] = sum(f.endswith(".parquet") for _, _, fs in os.walk(out_dir) for f in fs)
    _iterate_ray(ds, result)
    t1 = time.perf_counter()
    result.update(
        seconds=t1 - t_init,
        seconds_with_startup=t1 - t0,
        ray_init_s=t_init - t0,
        first_batch_s=result.pop("first_batch_at") - t_init,
    )
    _time_warm_read(ds, result)
    ray.shutdown()


def _stream_all(path: str) -> tuple[int, float]:
    """Every row of a folder as one streaming training worker reads its share (world size 1):
    epoch 1's shuffled train rows, then the test rows. Runs in a Ray worker."""
    import torch

    from handvae.data.folders import plan_folder
    from handvae.model.vae import model_inputs
    from handvae.train.config import TrainConfig
    from handvae.train.worker import StreamingFeed

    started = time.perf_counter()
    feed = StreamingFeed(plan_folder(path), TrainConfig(batch_size=BATCH), rank=0, world=1)
    rows = 0
    for batches in (feed.train_batches(epoch=1), feed.test_batches()):
        for images, labels in batches:
            x, y = model_inputs(images, labels)
            rows += len(y)
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
    return rows, time.perf_counter() - started


def worker_streaming_read(out_dir: str, result: dict) -> None:
    import ray

    from handvae.runtime import init_ray

    t0 = time.perf_counter()
    init_ray()
    t_init = time.perf_counter()
    result["ray_cpus"] = ray.cluster_resources().get("CPU")
    rows, in_worker = ray.get(ray.remote(_stream_all).remote(out_dir))
    t1 = time.perf_counter()
    result.update(
        rows=rows, seconds=t1 - t_init, seconds_with_startup=t1 - t0, ray_init_s=t_init - t0, read_in_worker_s=in_worker
    )
    ray.shutdown()


def run_worker(argv: list[str], sample_every: float, label: str) -> dict:
    """`ingest.py _worker MODE PATH RESULT ...` in a fresh subprocess, measured."""
    fd, result_path = tempfile.mkstemp(prefix="ingest-", suffix=".json")
    os.close(fd)
    command = [sys.executable, os.path.abspath(__file__), "_worker", argv[0], argv[1], result_path, *argv[2:]]
    return run_measured(command, sample_every, label, result_path)


def worker_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("path")
    p.add_argument("result")
    p.add_argument("--prepared-dir")
    p.add_argument("--chunk-bytes", type=int)
    a = p.parse_args(argv)
    result: dict = {"mode": a.mode}
    if a.mode == "seed":
        worker_seed(a.path, result)
    elif a.mode == "ray":
        worker_ray(a.path, result, a.chunk_bytes)
    elif a.mode == "prepare":
        worker_prepare(a.path, result, a.prepared_dir, a.chunk_bytes)
    elif a.mode == "prepared_read":
        worker_prepared_read(a.prepared_dir, result)
    elif a.mode == "streaming_read":
        worker_streaming_read(a.prepared_dir, result)
    else:
        raise SystemExit(f"unknown mode {a.mode}")
    with open(a.result, "w") as f:
        json.dump(result, f)


# --------------------------------------------------------------------------------------------------
# 3. The run and the table
# --------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", required=True, help="the real Kaggle A-Z CSV whose rows are resampled")
    p.add_argument(
        "--work-dir", default="/tmp/handvae-bench", help="where the full-size file and the prepared folder go"
    )
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument("--rows", type=int, default=KAGGLE_ROWS, help="rows of the full-size file")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling and shifts")
    p.add_argument("--sample-every", type=float, default=0.15, help="seconds between memory samples")
    p.add_argument(
        "--csv-chunk-bytes", type=int, help="DataSources.csv_chunk_bytes for the Ray paths (default: handvae's)"
    )
    p.add_argument("--skip", nargs="*", default=[], choices=["seed", "cli", "ray", "prepare"], help="paths not to run")
    a = p.parse_args()

    full = os.path.join(a.work_dir, f"az_resampled_{a.rows}_seed{a.seed}.csv")
    file_info = make_full_file(a.csv, full, a.rows, a.seed)
    print(
        f"[file] NOTE: every figure below comes from this RESAMPLED file ({a.rows:,} rows made from the real rows of {a.csv}), not the original Kaggle file"
    )
    chunk = ["--chunk-bytes", str(a.csv_chunk_bytes)] if a.csv_chunk_bytes else []
    prepared = os.path.join(a.work_dir, "prepared")

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    git = lambda *args: subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True).stdout.strip()  # noqa: E731
    code = {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": git("status", "--porcelain", "--", "handvae").splitlines(),
    }
    print(
        f"[code] handvae at {code['commit']}"
        + (f", uncommitted changes in {len(code['dirty'])} file(s) under handvae/" if code["dirty"] else "")
    )
    runs = {}
    if "seed" not in a.skip:
        runs["seed"] = run_worker(["seed", full], a.sample_every, "seed")
    if "cli" not in a.skip:
        # As a new user runs it: the whole `handvae data` process (Python start-up, imports, Ray's
        # start, the read and validation of every row, the summary) against the seed's whole process.
        runs["cli"] = run_measured(
            [sys.executable, "-m", "handvae.cli", "data", "--letters-csv", full], a.sample_every, "cli"
        )
    if "ray" not in a.skip:
        runs["ray"] = run_worker(["ray", full, *chunk], a.sample_every, "ray")
    if "prepare" not in a.skip:
        runs["prepare"] = run_worker(["prepare", full, "--prepared-dir", prepared, *chunk], a.sample_every, "prepare")
        runs["prepared_read"] = run_worker(
            ["prepared_read", full, "--prepared-dir", prepared], a.sample_every, "prepared_read"
        )
        runs["streaming_read"] = run_worker(
            ["streaming_read", full, "--prepared-dir", prepared], a.sample_every, "streaming_read"
        )

    print()
    print(
        f"Ingest of {a.rows:,} rows ({file_info['bytes'] / 1e6:,.0f} MB CSV, resampled from the real file) into batches of {BATCH}, "
        f"{os.cpu_count()} CPUs; peak = PSS summed over the whole process tree"
    )
    header = f"{'path':<34} {'rows':>9} {'seconds':>8} {'+ray init':>9} {'peak MB':>8} {'speed vs seed':>13} {'mem vs seed':>11}"
    print(header)
    print("-" * len(header))
    seed = runs.get("seed")
    names = {
        "seed": "a. seed (pandas read_csv)",
        "ray": "b. ray read_split(letters_csv)",
        "prepare": "c1. ray prepare -> parquet",
        "prepared_read": "c2. prepared, Ray Data read_split",
        "streaming_read": "c3. prepared, streaming worker",
    }
    for key, r in runs.items():
        if key == "cli":
            continue
        with_init = f"{r['seconds_with_startup']:9.1f}" if "seconds_with_startup" in r else f"{'':>9}"
        speed = f"{seed['seconds'] / r['seconds']:12.2f}x" if seed else ""
        mem = f"{r['peak_pss_mb'] / seed['peak_pss_mb']:10.0%}" if seed else ""
        if seed and "seconds_with_startup" in r:
            speed = f"{seed['seconds'] / r['seconds']:.2f}x/{seed['seconds'] / r['seconds_with_startup']:.2f}x".rjust(
                13
            )
        print(
            f"{names[key]:<34} {r['rows']:>9,} {r['seconds']:8.1f} {with_init} {r['peak_pss_mb']:8,.0f} {speed:>13} {mem:>11}"
        )
    ray_cpus = {r.get("ray_cpus") for r in runs.values()} - {None}
    if ray_cpus:
        print(
            f"Ray logical CPUs (init_ray default): {', '.join(f'{c:g}' for c in sorted(ray_cpus))} on {os.cpu_count()} cores"
        )
    if "prepared_read" in runs:
        print(
            f"prepared folder: {runs['prepared_read'].get('parquet_files')} parquet files, {runs['prepare'].get('prepared_bytes', 0) / 1e6:,.0f} MB"
        )
    print("(speed vs seed: seed seconds / path seconds, without/with Ray start-up; mem vs seed: path peak / seed peak)")
    if seed:
        print(f"seed read {seed['rows']:,} rows: pandas took line 1 as a header, so one row of the {a.rows:,} is lost")
    verdicts = {}
    if seed and "ray" in runs:
        r = runs["ray"]
        speedup, speedup_init, mem = (
            seed["seconds"] / r["seconds"],
            seed["seconds"] / r["seconds_with_startup"],
            r["peak_pss_mb"] / seed["peak_pss_mb"],
        )
        verdicts = {
            "speedup": speedup,
            "speedup_with_startup": speedup_init,
            "memory_ratio": mem,
            "rows_ok": r["rows"] == a.rows,
            "speed_target_met": speedup >= TARGET_SPEEDUP,
            "speed_target_met_with_startup": speedup_init >= TARGET_SPEEDUP,
            "memory_target_met": mem <= TARGET_MEMORY,
        }
        print(
            f"targets (ray vs seed, {os.cpu_count()} CPUs): >= {TARGET_SPEEDUP:.0f}x faster: {speedup:.2f}x without start-up "
            f"[{'MET' if speedup >= TARGET_SPEEDUP else 'MISSED'}], {speedup_init:.2f}x with it "
            f"[{'MET' if speedup_init >= TARGET_SPEEDUP else 'MISSED'}]; <= {TARGET_MEMORY:.0%} of seed peak memory: {mem:.0%} "
            f"[{'MET' if mem <= TARGET_MEMORY else 'MISSED'}]; rows {r['rows']:,} {'== ' if r['rows'] == a.rows else '!= '}{a.rows:,}"
        )
    if seed and "cli" in runs:
        cli, ratio = runs["cli"], seed["process_wall_s"] / runs["cli"]["process_wall_s"]
        verdicts["first_read_whole_process"] = ratio
        print(
            f"first read as a new user runs it (whole processes): `handvae data --letters-csv` {cli['process_wall_s']:.1f} s, "
            f"{cli['peak_pss_mb']:,.0f} MB; the seed's process {seed['process_wall_s']:.1f} s, {seed['peak_pss_mb']:,.0f} MB: "
            f"{ratio:.2f}x [{'MET' if ratio >= 1 else 'MISSED'}: target >= 1x]"
        )
    for key, verdict in (("prepared_read", "prepared"), ("streaming_read", "streaming")):
        if seed and key in runs:
            r = runs[key]
            speedup, mem = seed["seconds"] / r["seconds"], r["peak_pss_mb"] / seed["peak_pss_mb"]
            verdicts.update({f"{verdict}_speedup": speedup, f"{verdict}_memory_ratio": mem})
            print(
                f"{names[key]} vs seed, without Ray's start-up: {speedup:.2f}x [{'MET' if speedup >= TARGET_SPEEDUP else 'MISSED'}: "
                f"target >= {TARGET_SPEEDUP:.0f}x], memory {mem:.0%} [{'MET' if mem <= TARGET_MEMORY else 'MISSED'}: target <= {TARGET_MEMORY:.0%}]"
            )
    for key in ("ray", "prepared_read"):
        if seed and key in runs:
            print(
                f"warm (a second read in the same process): {names[key]} {runs[key]['warm_read_s']:.1f} s, {seed['seconds'] / runs[key]['warm_read_s']:.2f}x the seed"
            )
            verdicts[f"{key}_warm_speedup"] = seed["seconds"] / runs[key]["warm_read_s"]
    for key, r in runs.items():
        top = ", ".join(f"{k} {v:,.0f}" for k, v in list(r["peak_breakdown_mb"].items())[:6])
        extra = {
            k: round(v, 2)
            for k, v in r.items()
            if k.endswith("_s") and k not in ("seconds_with_startup",) and isinstance(v, float)
        }
        print(
            f"  {key}: phases {extra}; peak RSS sum {r['peak_rss_mb']:,.0f} MB; /dev/shm growth {r['peak_dev_shm_growth_mb']:,.0f} MB; at peak: {top}"
        )
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(
                {
                    "file": file_info,
                    "resampled": True,
                    "real_csv": a.csv,
                    "cpus": os.cpu_count(),
                    "batch_size": BATCH,
                    "code": code,
                    "runs": runs,
                    "targets": {"speedup": TARGET_SPEEDUP, "memory_ratio": TARGET_MEMORY},
                    "verdicts": verdicts,
                },
                f,
                indent=2,
            )
        print(f"wrote {a.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker_main(sys.argv[2:])
    else:
        main()
