"""Training that streams its shard from a data set folder: which rows each rank reads, determinism
across runs, a resume, a worker fault and a copy of the folder elsewhere, both folder layouts, the
class latent means, and clear errors for bad folders."""

import glob
import json
import shutil
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from handvae.cli import app
from handvae.data import folders
from handvae.data.images import encode_pngs
from handvae.data.prepare import prepare
from handvae.data.sources import DataSources
from handvae.data.streaming import epoch_slices, in_order_batches, shuffled_batches
from handvae.formats.checkpoints import FAULT_MARKER
from handvae.formats.model_file import load_model_and_metadata
from handvae.model.vae import VAEConfig
from handvae.train.config import TrainConfig
from handvae.train.driver import run_training
from handvae.train.worker import FAULT_INJECTION_ENV

from conftest import assert_same_weights, make_letters, write_kaggle_csv

ROWS = 416
EPOCHS = 3


def write_generated(root, images, labels, files=3, row_group=50, pixels_type=None, label_column="label"):
    """A folder in the layout `handvae generate` writes (contract 4): parquet files listed in
    manifest.json, a `pixels` and an `image` (PNG) column, `_SUCCESS`."""
    root.mkdir(parents=True)
    (root / "data").mkdir()
    names, per_file = [], -(-len(labels) // files)
    for index, start in enumerate(range(0, len(labels), per_file)):
        chunk, count = images[start : start + per_file], len(labels[start : start + per_file])
        flat = np.ascontiguousarray(chunk).reshape(count, -1)
        width = pixels_type.byte_width if pixels_type else 784
        flat = np.pad(flat, ((0, 0), (0, width - 784))) if width > 784 else flat
        table = pa.table(
            {
                "style_id": pa.array(np.arange(start, start + count) // 36, pa.int64()),
                "source": pa.array(["styles.csv"] * count),
                "row": pa.array(np.arange(start, start + count) // 36, pa.int64()),
                "sample": pa.array(np.zeros(count), pa.int16()),
                "char": pa.array(["?"] * count),
                label_column: pa.array(labels[start : start + count].astype(np.int16)),
                "pixels": pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(width), count, [None, pa.py_buffer(flat.tobytes())]
                ),
                "image": pa.array(
                    [{"bytes": png, "path": None} for png in encode_pngs(chunk)],
                    pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
                ),
            }
        )
        name = f"data/part-{index:05d}.parquet"
        pq.write_table(table, root / name, row_group_size=row_group)
        names.append(name)
    (root / "manifest.json").write_text(
        json.dumps({"format": "handvae.generated", "files": names, "rows": len(labels)})
    )
    (root / "_SUCCESS").touch()
    return root


@pytest.fixture(scope="module")
def letters():
    images, labels = make_letters(ROWS, learnable=True)
    return images, labels + 10


@pytest.fixture(scope="module")
def generated(letters, tmp_path_factory):
    return write_generated(tmp_path_factory.mktemp("gen") / "generated", *letters)


@pytest.fixture(scope="module")
def config():
    return TrainConfig(
        epochs=EPOCHS,
        batch_size=16,
        num_workers=2,
        learning_rate=3e-3,
        report=False,
        data_feed="stream",
        model=VAEConfig(num_filters=8, num_latent=4),
    )


@pytest.fixture(scope="module")
def straight(ray_local, generated, config, tmp_path_factory):
    return run_training(config, DataSources(dataset=str(generated)), "straight", str(tmp_path_factory.mktemp("runs")))


# ---- which rows each rank reads (no Ray) ----------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_epoch_gives_every_rank_an_equal_disjoint_share_of_every_row(world):
    unit_rows = [37, 5, 50, 0, 50, 12, 1]
    total = sum(unit_rows)
    for epoch in (1, 2):
        shares = [
            [(u, r) for u, lo, hi in epoch_slices(unit_rows, world, rank, seed=7, epoch=epoch) for r in range(lo, hi)]
            for rank in range(world)
        ]
        assert len({len(share) for share in shares}) == 1  # the same rows, so the same steps, on every rank
        used = [row for share in shares for row in share]
        assert len(used) == len(set(used)) and total - len(used) == total % world < world
    orders = [epoch_slices(unit_rows, 2, 0, seed=7, epoch=epoch) for epoch in (1, 2)]
    assert orders[0] != orders[1] and orders[0] == epoch_slices(unit_rows, 2, 0, seed=7, epoch=1)
    evaluation = [epoch_slices(unit_rows, world, rank, seed=7, epoch=0, shuffle=False) for rank in range(world)]
    assert sum(hi - lo for share in evaluation for _, lo, hi in share) == total  # every test row, once


def test_window_shuffle_depends_on_the_rows_not_on_how_they_arrive():
    images = np.arange(100, dtype=np.uint8).repeat(784).reshape(100, 28, 28)
    labels = np.arange(100, dtype=np.uint8)

    def run(cuts):
        blocks = [(images[a:b], labels[a:b]) for a, b in zip([0, *cuts], [*cuts, 100])]
        return [b[1] for b in shuffled_batches(blocks, batch_size=16, seed=1, epoch=2, rank=0, window_rows=32)]

    one, many = run([]), run([3, 40, 41, 90])
    assert [len(b) for b in one] == [16] * 6 + [4]
    assert all(torch.equal(a, b) for a, b in zip(one, many))
    rows = torch.cat(one)
    assert sorted(rows.tolist()) == list(range(100)) and rows.tolist() != list(range(100))
    assert set(rows[:32].tolist()) == set(range(32))  # shuffled within its window of 32 rows only


def test_evaluation_batches_keep_the_read_order_in_one_size_whatever_the_blocks():
    # One size however the blocks are cut: a new size every other batch kept the freed activations
    # of each size in glibc's heap (a worker's memory grew with every test batch).
    images = np.arange(100, dtype=np.uint8).repeat(784).reshape(100, 28, 28)
    labels = np.arange(100, dtype=np.uint8)
    cuts = [0, 3, 40, 41, 90, 100]
    blocks = [(images[a:b], labels[a:b]) for a, b in zip(cuts, cuts[1:])]
    batches = list(in_order_batches(blocks, batch_size=16))
    assert [len(b[1]) for b in batches] == [16] * 6 + [4]
    assert torch.cat([b[1] for b in batches]).tolist() == list(range(100))
    assert torch.equal(torch.cat([b[0] for b in batches]), torch.from_numpy(images))
    assert list(in_order_batches([], batch_size=16)) == []


# ---- the folder reader ----------------------------------------------------------------------------


def test_provenance_is_the_file_name_not_where_it_lives():
    rows = np.array([3, 4])
    keys = [
        folders.order_keys(np.array([s, s], dtype=object), rows)
        for s in ("/data/az.csv", "s3://bucket/x/az.csv", "az.csv", "/elsewhere/az.csv")
    ]
    assert all(np.array_equal(keys[0], k) for k in keys) and keys[0][0] != keys[0][1]
    # Inside a data set folder, the name relative to the folder: two files called part-0 stay apart.
    assert folders.order_keys(np.array(["a/part-0.parquet"], dtype=object), rows[:1]) != folders.order_keys(
        np.array(["b/part-0.parquet"], dtype=object), rows[:1]
    )


def test_a_generated_folder_is_planned_by_row_group_with_a_seeded_split(generated, tmp_path):
    plan = folders.plan_folder(str(generated))
    assert plan.image_column == "pixels" and not plan.prepared and len(plan.units) == 9  # 3 files x 3 row groups
    assert plan.rows("train") + plan.rows("test") == ROWS and 0.1 < plan.rows("test") / ROWS < 0.3
    copy = shutil.copytree(generated, tmp_path / "copy")
    assert folders.plan_folder(str(copy)).units == plan.units


def test_handvae_data_reads_a_generated_folder_with_its_file_names_as_sources(ray_local, generated):
    result = CliRunner().invoke(app, ["data", "--dataset", str(generated)])
    assert result.exit_code == 0, result.output
    plan = folders.plan_folder(str(generated))
    assert f"{ROWS:>8}  total" in result.output
    assert (
        f"{plan.units[0].rows[0] + plan.units[1].rows[0] + plan.units[2].rows[0]:>8}  train  data/part-00000.parquet"
        in result.output
    )


def test_each_rank_streams_its_own_rows_once_per_epoch(generated):
    plan = folders.plan_folder(str(generated))
    train_rows = [u.rows[0] for u in plan.units]

    def rank_rows(rank, epoch):
        slices = epoch_slices(train_rows, 2, rank, seed=0, epoch=epoch)
        return [img.tobytes() for images, _ in folders.read_slices(plan, "train", slices) for img in images]

    shares = [rank_rows(rank, 1) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == plan.rows("train") // 2
    assert len(set(shares[0]) | set(shares[1])) == 2 * len(shares[0])  # disjoint (the images are all different)
    assert (
        rank_rows(0, 1) == shares[0] and rank_rows(0, 2) != shares[0]
    )  # the same order again; another epoch, another share


def test_read_ahead_keeps_order_raises_the_readers_error_and_stops_with_the_consumer():
    import threading
    import time

    assert list(folders._read_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise folders.DataError("f.parquet: not readable")

    with pytest.raises(folders.DataError, match="f.parquet"):
        list(folders._read_ahead(failing()))

    produced = []

    def endless():
        for i in range(10**9):
            produced.append(i)
            yield i

    reader = folders._read_ahead(endless(), depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()  # the consumer stops: so does the thread, a few items ahead at most
    assert not any(t.name == "handvae-read-ahead" for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 2

    # The consumer stops after the reader has read everything, with the queue full: no hang.
    reader = folders._read_ahead(iter(range(2)), depth=1)
    assert next(reader) == 0
    time.sleep(0.3)  # the thread has queued 1 and waits to queue the end
    reader.close()
    assert not any(t.name == "handvae-read-ahead" for t in threading.enumerate())


# ---- training -------------------------------------------------------------------------------------


def test_streaming_run_learns_and_exports_the_class_latent_means_of_its_last_epoch(straight, generated):
    records = [json.loads(line) for line in open(f"{straight.run_dir}/metrics.jsonl")]
    plan = folders.plan_folder(str(generated))
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for record in records:
        assert record["train_images"] == plan.rows("train") // 2 * 2 and record["test_images"] == plan.rows("test")
    assert records[-1]["recon_loss"] < records[0]["recon_loss"] and records[-1]["cat_loss"] < records[0]["cat_loss"]
    means = load_model_and_metadata(straight.model_path)[0].state_dict()["class_latent_means"]
    assert means[10:].abs().sum(dim=1).min() > 0 and means[:10].abs().sum() == 0  # letters only: no digit has a mean
    last = sorted(glob.glob(f"{straight.run_dir}/checkpoint_*/"))[-1]
    state = torch.load(f"{last}/train_state.pt", weights_only=True)["model_state"]
    assert torch.equal(state["class_latent_means"], means)  # the checkpoint carries them; model.pt is exported from it


def test_stopped_on_a_copy_of_the_folder_elsewhere_then_a_worker_fault_gives_the_same_weights(
    ray_local, generated, config, straight, tmp_path, monkeypatch
):
    # Three promises in one resumed run (the suite's time is short): the folder moved elsewhere
    # gives the same splits, order and weights; a run stopped after epoch 2 resumes at epoch 3;
    # a worker failure at the end of epoch 3 is retried from the epoch-2 checkpoint.
    copy = DataSources(dataset=str(shutil.copytree(generated, tmp_path / "moved" / "elsewhere")))
    run_training(replace(config, epochs=2), copy, "resumed", str(tmp_path))
    monkeypatch.setenv(FAULT_INJECTION_ENV, "raise:3")
    result = run_training(replace(config, max_failures=1), copy, "resumed", str(tmp_path))
    assert (tmp_path / "resumed" / FAULT_MARKER).exists()
    assert [r["epoch"] for r in result.metrics] == [1, 2, 3]
    losses = lambda metrics: [(r["cat_loss"], r["recon_loss"], r["test_accuracy"]) for r in metrics]  # noqa: E731
    assert losses(result.metrics) == losses(straight.metrics)
    assert_same_weights(result.model_path, straight.model_path)


def test_a_prepared_folder_trains_streaming(ray_local, letters, tmp_path):
    images, labels = letters
    csv = write_kaggle_csv(tmp_path / "az.csv", images, labels - 10)
    prepare(DataSources(letters_csv=str(csv)), str(tmp_path / "prepared"))
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--dataset",
            str(tmp_path / "prepared"),
            "--data-feed",
            "stream",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--num-workers",
            "2",
            "--no-report",
            "--storage-path",
            str(tmp_path / "runs"),
            "--run-name",
            "prepared",
            "--config",
            str(_tiny_model(tmp_path)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "data: streaming" in result.output
    record = json.loads((tmp_path / "runs" / "prepared" / "metrics.jsonl").read_text())
    assert record["train_images"] + record["test_images"] in (ROWS, ROWS - 1) and record["test_images"] > 0


def _tiny_model(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text("[model]\nnum_filters = 8\nnum_latent = 4\n")
    return path


# ---- bad folders ----------------------------------------------------------------------------------


def _bad_folders(tmp_path, letters):
    images, labels = letters[0][:40], letters[1][:40]
    write_generated(tmp_path / "unfinished", images, labels, files=1).joinpath("_SUCCESS").unlink()
    write_generated(tmp_path / "nolabel", images, labels, files=1, label_column="class")
    out_of_range = labels.copy()
    out_of_range[7] = 36
    write_generated(tmp_path / "badlabel", images, out_of_range, files=1)
    write_generated(tmp_path / "wide", images, labels, files=1, pixels_type=pa.binary(784 * 2))
    return {
        "absent": (tmp_path / "absent", "absent: data set folder (--dataset"),
        "unfinished": (tmp_path / "unfinished", "unfinished: no _SUCCESS marker"),
        "nolabel": (tmp_path / "nolabel", "nolabel/data/part-00000.parquet: no `label` column"),
        "badlabel": (tmp_path / "badlabel", "badlabel/data/part-00000.parquet, row 7: label 36 is outside 0-35"),
        "wide": (tmp_path / "wide", r"wide/data/part-00000.parquet: images are `pixels` fixed_size_binary[1568]"),
    }


def test_bad_dataset_folders_get_clear_errors_naming_the_file(ray_local, letters, tmp_path):
    runner = CliRunner()
    for name, (folder, message) in _bad_folders(tmp_path, letters).items():
        result = runner.invoke(
            app,
            [
                "train",
                "--dataset",
                str(folder),
                "--no-report",
                "--storage-path",
                str(tmp_path / "runs"),
                "--run-name",
                name,
            ],
        )
        assert result.exit_code == 2, (name, result.output)
        assert message in result.stderr and "Traceback" not in result.stderr, (name, result.stderr)
        assert not (tmp_path / "runs" / name).exists(), "a bad data set fails before the run folder is written"
