"""Hostile inputs (issue 15): each ends in one `error:` line naming the file or flag and what was
expected, exit status 2, no traceback, and leaves the user's files as they were; or, where the
input is valid after all (a BOM, a compressed CSV, a 16-bit scan), every row or pixel is read."""

import bz2
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from handvae.cli import app
from handvae.data.kaggle_csv import plan_csv, read_chunk
from handvae.errors import DataError
from handvae.rng import mix64

from conftest import make_letters, write_kaggle_csv

REPO = Path(__file__).resolve().parents[1]


def read_all(path, chunk_bytes=None):
    plan = plan_csv(str(path), chunk_bytes)
    batches = [read_chunk(plan, chunk, 0, 0.2) for chunk in plan.chunks]
    return plan, {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def fingerprint(folder: Path) -> dict:
    """Every file under `folder` with its content's hash: the user's files, all still there."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_user_error(result, *named: str):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in named:
        assert name in lines[0], (name, lines[0])


def edit_line(path: Path, line: int, field: int, value: str) -> Path:
    lines = path.read_text().split("\n")
    fields = lines[line - 1].split(",")
    fields[field] = value
    lines[line - 1] = ",".join(fields)
    path.write_text("\n".join(lines))
    return path


# ---- rows --------------------------------------------------------------------------------------


def test_a_bom_is_stripped_and_every_row_kept(tmp_path):
    images, labels = make_letters(10)
    for header in (False, True):
        path = write_kaggle_csv(tmp_path / f"bom{header}.csv", images, labels, header=header)
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
        plan, batch = read_all(path, chunk_bytes=4000)
        assert plan.has_header == header and plan.num_data_rows == 10 and len(plan.chunks) > 2
        np.testing.assert_array_equal(batch["image"], images)
        np.testing.assert_array_equal(batch["row"], np.arange(10) + 1 + header)


def test_a_header_of_column_names_is_a_header(tmp_path):
    images, labels = make_letters(5)
    path = write_kaggle_csv(tmp_path / "named.csv", images, labels)
    names = ",".join(["label"] + [f"pixel{i}" for i in range(784)])
    path.write_text(names + "\n" + path.read_text())
    plan, batch = read_all(path)
    assert plan.has_header and len(batch["label"]) == 5


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("line", [1, 7])
@pytest.mark.parametrize(
    "field,value,said", [(5, "12.0", "pixel 4 is '12.0', not an integer"), (0, "A", "label is 'A', not an integer")]
)
def test_a_bad_first_line_is_the_same_error_as_on_line_7(tmp_path, line, field, value, said):
    images, labels = make_letters(10)
    path = edit_line(write_kaggle_csv(tmp_path / "az.csv", images, labels), line, field, value)
    before = fingerprint(tmp_path)
    result = CliRunner().invoke(app, ["data", "--letters-csv", str(path)])
    assert_user_error(result, f"{path}, line {line}: {said}")
    assert fingerprint(tmp_path) == before


def test_a_file_with_only_a_header_line_is_refused_by_name(tmp_path):
    path = tmp_path / "header_only.csv"
    path.write_text(",".join(["0"] + [f"0.{i}" for i in range(1, 785)]) + "\n")
    result = CliRunner().invoke(app, ["data", "--letters-csv", str(path)])  # refused before Ray starts
    assert_user_error(result, str(path), "only a header line, no data rows")
    assert len(path.read_text().split(",")) == 785


@pytest.mark.parametrize(
    "suffix,compress", [(".csv.gz", gzip.compress), (".csv.bz2", bz2.compress), (".csv", gzip.compress)]
)
def test_compressed_csvs_are_read_whole(tmp_path, suffix, compress):
    """By magic bytes, so a gzip file named .csv is read too; one range for the whole file."""
    images, labels = make_letters(40)
    plain = write_kaggle_csv(tmp_path / "plain.csv", images, labels, header=True)
    path = tmp_path / f"az{suffix}"
    path.write_bytes(compress(b"\xef\xbb\xbf" + plain.read_bytes()))
    plan, batch = read_all(path)
    assert plan.compression and len(plan.chunks) == 1 and plan.num_data_rows == 40
    np.testing.assert_array_equal(batch["image"], images)
    _, uncompressed = read_all(plain)
    np.testing.assert_array_equal(batch["split"], uncompressed["split"])
    np.testing.assert_array_equal(batch["row"], uncompressed["row"])  # lines of the decompressed text


def test_a_bad_line_in_a_compressed_csv_is_named(tmp_path):
    images, labels = make_letters(10)
    plain = edit_line(write_kaggle_csv(tmp_path / "plain.csv", images, labels), 7, 3, "x")
    path = tmp_path / "az.csv.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(DataError, match=f"{path}, line 7: pixel 2 is 'x'"):
        read_all(path)
    big = write_kaggle_csv(tmp_path / "big.csv", *make_letters(100))  # longer than the 64 KB head
    compressed = gzip.compress(big.read_bytes())
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match=f"{path}: cannot read the letters CSV \\(Truncated compressed stream\\)"):
        plan_csv(str(path))


def test_a_zip_archive_is_refused_as_one(tmp_path):
    import zipfile

    path = tmp_path / "az.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("az.csv", "0," + ",".join(["0"] * 784) + "\n")
    result = CliRunner().invoke(app, ["data", "--letters-csv", str(path)])
    assert_user_error(result, str(path), "a zip archive")


def test_a_folder_where_the_csv_should_be_is_named(tmp_path):
    (tmp_path / "az.csv").mkdir()
    result = CliRunner().invoke(app, ["data", "--letters-csv", str(tmp_path / "az.csv")])
    assert_user_error(result, str(tmp_path / "az.csv"), "a folder, expected the letters CSV file")


def test_an_unreadable_csv_is_named_before_ray_starts(tmp_path):
    """Permission denied for real. Root reads any file, so as root the command runs without the
    capabilities that let it (as a user without them would)."""
    images, labels = make_letters(3)
    path = write_kaggle_csv(tmp_path / "az.csv", images, labels)
    path.chmod(0)
    without_override = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if without_override and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: no way to deny a read")
    result = subprocess.run(
        [*without_override, sys.executable, "-m", "handvae.cli", "data", "--letters-csv", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.startswith(f"error: {path}: cannot read the letters CSV")
        and len(result.stderr.strip().splitlines()) == 1
    )
    assert "ermission denied" in result.stderr
    path.chmod(0o644)
    assert len(path.read_text().splitlines()) == 3


def test_an_unreadable_mnist_file_is_named(tmp_path):
    from conftest import make_mnist_root

    make_mnist_root(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.chmod(0)
    without_override = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if without_override and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: no way to deny a read")
    read = (
        f"from handvae.data.mnist_idx import read_mnist_split; read_mnist_split({str(tmp_path / 'mnist')!r}, 'train')"
    )
    result = subprocess.run(
        [*without_override, sys.executable, "-c", read],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert f"DataError: {path}: cannot read the MNIST" in result.stderr and "ermission denied" in result.stderr
    path.chmod(0o644)


# ---- seeds -------------------------------------------------------------------------------------


def test_mix64_wraps_without_a_warning_and_is_splitmix64():
    def splitmix(value: int, seed: int) -> int:
        mask = (1 << 64) - 1
        x = (value + (seed & 0xFFFFFFFF) * 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in scalar multiply"
        for seed in (0, 2, 12345, 2**40 + 7):
            got = mix64(np.arange(5), seed)
            assert got.tolist() == [splitmix(v, seed) for v in range(5)]


# ---- style images ------------------------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height (1-bit) but holds no pixels: Pillow checks the size on
    opening, so this is what a 15000x15000 scan looks like to it, in 60 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def letter_l(path: Path, ink: int = 0, paper: int = 255) -> Path:
    image = np.full((140, 90), paper, np.uint8)
    image[20:111, 20:35] = ink
    image[96:111, 20:71] = ink
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from handvae.formats.model_file import save_model
    from handvae.model.vae import VAE, VAEConfig

    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, VAE(VAEConfig(num_filters=8, num_latent=4)))
    return str(path)


def generate_with_styles(model: str, out: Path, *styles: Path):
    args = ["generate", "--model", model, "--out", str(out), "--chars", "AB"]
    for style in styles:
        args += ["--style-images", str(style)]
    return CliRunner().invoke(app, args)


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("side", [10_000, 15_000])  # over Pillow's limit, and over twice it (its hard error)
def test_an_image_too_large_is_named_with_the_limit(tmp_path, tiny_model, side):
    big = png_header_only(tmp_path / "scan.png", side, side)
    before = fingerprint(tmp_path)
    result = generate_with_styles(tiny_model, tmp_path / "out", letter_l(tmp_path / "l.png"), big)
    assert_user_error(result, f"{big}: image too large", f"{Image.MAX_IMAGE_PIXELS:,} pixels")
    assert (
        fingerprint(tmp_path) == {**before, "l.png": fingerprint(tmp_path)["l.png"]} and not (tmp_path / "out").exists()
    )


@pytest.mark.usefixtures("ray_local")
def test_duplicate_style_images_are_named_both_before_generating(tmp_path, tiny_model):
    first = letter_l(tmp_path / "a.png")
    copy = tmp_path / "copy.png"
    copy.write_bytes(first.read_bytes())
    before = fingerprint(tmp_path)
    result = generate_with_styles(tiny_model, tmp_path / "out", first, first)
    assert_user_error(result, f"{first} and {first}: the same file given as two style images")
    result = generate_with_styles(tiny_model, tmp_path / "out", first, letter_l(tmp_path / "b.png", ink=40), copy)
    assert_user_error(result, f"{first} and {copy}: two files of identical content")
    assert {k: v for k, v in fingerprint(tmp_path).items() if k != "b.png"} == before and not (
        tmp_path / "out"
    ).exists()


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_scans_are_scaled_not_clipped(tmp_path, mode):
    """A scan whose paper and ink both lie above 255 in 16 bits: clipped, it would be blank."""
    from handvae.data.images import load_style_image

    eight_bit = load_style_image(str(letter_l(tmp_path / "l8.png", ink=40, paper=200)))
    sixteen = np.full((140, 90), 200 * 257, np.uint16)
    sixteen[20:111, 20:35] = 40 * 257
    sixteen[96:111, 20:71] = 40 * 257
    dtype = {"I;16": "<u2", "I;16B": ">u2", "I": "<i4"}[mode]
    Image.frombytes(mode, (90, 140), sixteen.astype(dtype).tobytes()).save(tmp_path / "l16.tif")
    assert Image.open(tmp_path / "l16.tif").mode == mode
    np.testing.assert_array_equal(load_style_image(str(tmp_path / "l16.tif")), eight_bit)


# ---- workers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "evaluate", "generate"])
def test_more_workers_than_the_machine_holds_are_refused_before_ray_starts(tmp_path, tiny_model, command, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = {
        "train": ["--storage-path", str(tmp_path), "--run-name", "r"],
        "evaluate": ["--model", tiny_model, "--out", str(tmp_path / "o")],
    }
    args["generate"] = args["evaluate"]
    result = CliRunner().invoke(app, [command, *args[command], "--num-workers", "50"])
    assert_user_error(
        result, f"--num-workers 50: this machine has {os.cpu_count()} CPU core(s), so at most {os.cpu_count()} workers"
    )
    assert list(tmp_path.iterdir()) == []


# ---- resume ------------------------------------------------------------------------------------


def write_checkpoint(run_dir: Path, epoch: int, config=None) -> Path:
    """A checkpoint folder as training writes it (without Ray: the state file is all there is)."""
    import torch

    from handvae.formats.checkpoints import TrainingState
    from handvae.model.vae import VAE, VAEConfig
    from handvae.train.config import TrainConfig

    config = config or TrainConfig(epochs=3, batch_size=16, num_workers=1, model=VAEConfig(num_filters=8, num_latent=4))
    torch.manual_seed(epoch)
    model = VAE(config.model)
    optimizer = torch.optim.Adam(model.parameters())
    history = [{"epoch": e, "cat_loss": 1.0 / e} for e in range(1, epoch + 1)]
    folder = run_dir / f"checkpoint_2026-01-01_00-00-0{epoch}.000000"
    folder.mkdir(parents=True)
    TrainingState(model.state_dict(), optimizer.state_dict(), epoch, history, config.to_dict(), config.seed).save(
        str(folder)
    )
    return folder


def test_a_damaged_latest_checkpoint_is_named_and_the_one_before_used(tmp_path):
    from handvae.formats.checkpoints import RunCheckpoints

    write_checkpoint(tmp_path, 1)
    second = write_checkpoint(tmp_path, 2)
    latest = write_checkpoint(tmp_path, 3)
    state_file = latest / "train_state.pt"
    state_file.write_bytes(state_file.read_bytes()[:200])  # cut short, as a full disk leaves it
    warnings_seen = []
    folder, state = RunCheckpoints(str(tmp_path), warn=warnings_seen.append).latest()
    assert folder == str(second) and state.epoch == 2 and [r["epoch"] for r in state.history] == [1, 2]
    assert len(warnings_seen) == 1 and f"{state_file}: not a readable training state" in warnings_seen[0]
    assert f"resuming from {second} (epoch 2)" in warnings_seen[0]
    assert len(state_file.read_bytes()) == 200, "the damaged checkpoint is left as it was"
    # A state whose history does not match its epoch is damaged too; with none readable, an error.
    for folder in tmp_path.iterdir():
        (folder / "train_state.pt").write_bytes(b"not a torch file")
    from handvae.errors import ModelFileError

    with pytest.raises(ModelFileError, match=f"{tmp_path}: no readable checkpoint to resume from"):
        RunCheckpoints(str(tmp_path), warn=warnings_seen.append).latest()


def test_a_ray_snapshot_naming_a_deleted_checkpoint_is_set_aside(tmp_path):
    import json

    from handvae.formats.checkpoints import RunCheckpoints
    from handvae.runtime import RAY_TRAIN_SNAPSHOT as RAY_SNAPSHOT
    from handvae.runtime import set_aside_stale_train_snapshot

    kept = write_checkpoint(tmp_path, 1)
    snapshot = {"checkpoint_results": [{"checkpoint_dir_name": kept.name}, {"checkpoint_dir_name": "checkpoint_gone"}]}
    (tmp_path / RAY_SNAPSHOT).write_text(json.dumps(snapshot))
    warnings_seen = []
    checkpoints = RunCheckpoints(str(tmp_path), warn=warnings_seen.append)
    set_aside_stale_train_snapshot(str(tmp_path), checkpoints.folders(), checkpoints.warn)
    assert (
        not (tmp_path / RAY_SNAPSHOT).exists()
        and json.loads((tmp_path / f"{RAY_SNAPSHOT}.stale").read_text()) == snapshot
    )
    assert "checkpoint_gone" in warnings_seen[0]
    (tmp_path / RAY_SNAPSHOT).write_text(json.dumps({"checkpoint_results": [{"checkpoint_dir_name": kept.name}]}))
    set_aside_stale_train_snapshot(
        str(tmp_path), checkpoints.folders(), checkpoints.warn
    )  # a snapshot that matches the folders stays
    assert (tmp_path / RAY_SNAPSHOT).exists() and len(warnings_seen) == 1


def test_resuming_with_another_recipe_is_a_config_error_before_ray_starts(tmp_path, monkeypatch):
    from dataclasses import replace

    from handvae.train.config import resolve_config

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    write_checkpoint(tmp_path / "r", 1, config=replace(resolve_config(), batch_size=16, num_workers=1))
    before = fingerprint(tmp_path)
    result = CliRunner().invoke(
        app, ["train", "--storage-path", str(tmp_path), "--run-name", "r", "--batch-size", "32", "--num-workers", "1"]
    )
    assert_user_error(
        result, f"{tmp_path / 'r'} holds a run with a different recipe (batch_size differ from", "--run-name"
    )
    assert fingerprint(tmp_path) == before


def test_a_run_folder_that_never_trained_does_not_block_another_recipe(tmp_path, monkeypatch):
    """config.json but no checkpoint (a run that failed before its first one): no recipe to keep.
    The command gets past the recipe check to the next one (--num-workers 50, refused)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text('{"train": {"batch_size": 7, "epochs": 1}, "data": {}}')
    result = CliRunner().invoke(
        app, ["train", "--storage-path", str(tmp_path), "--run-name", "r", "--batch-size", "32", "--num-workers", "50"]
    )
    assert_user_error(result, "--num-workers 50")
    assert "different recipe" not in result.stderr


@pytest.mark.usefixtures("ray_local")
def test_training_resumes_past_a_damaged_and_past_a_deleted_checkpoint(tmp_path, capfd):
    """Real runs on Ray Train: the damaged latest checkpoint is named and the one before used; a
    deleted one (which Ray's own snapshot still lists) does not stop the run either."""
    from dataclasses import replace

    from handvae.data.sources import DataSources
    from handvae.model.vae import VAEConfig
    from handvae.train.config import TrainConfig
    from handvae.train.driver import run_training

    images, labels = make_letters(64, learnable=True)
    csv = write_kaggle_csv(tmp_path / "az.csv", images, labels)
    data = fingerprint(tmp_path)
    sources, storage, run = DataSources(letters_csv=str(csv)), str(tmp_path / "runs"), tmp_path / "runs" / "r"
    config = TrainConfig(
        epochs=2, batch_size=16, num_workers=1, report=False, model=VAEConfig(num_filters=8, num_latent=4)
    )
    trained = run_training(config, sources, "r", storage)
    first, second = sorted(run.glob("checkpoint_*/"))
    (second / "train_state.pt").write_bytes(b"half a file")
    capfd.readouterr()

    result = run_training(replace(config, epochs=3), sources, "r", storage)
    printed = capfd.readouterr()
    assert f"{second / 'train_state.pt'}: not a readable training state" in printed.err
    assert f"resuming from {first} (epoch 1)" in printed.err
    # Epoch 1 came from the checkpoint (its record, timing included, is the first run's), 2 and 3
    # were trained again. (Not the workers' printed lines: they reach the driver asynchronously.)
    assert [r["epoch"] for r in result.metrics] == [1, 2, 3]
    assert result.metrics[0] == trained.metrics[0] and result.metrics[1] != trained.metrics[1]

    resumed = result
    shutil.rmtree(sorted(run.glob("checkpoint_*/"))[-1])  # the epoch-3 checkpoint, which Ray's snapshot lists
    result = run_training(replace(config, epochs=3), sources, "r", storage)
    printed = capfd.readouterr()
    assert "set aside as checkpoint_manager_snapshot.json.stale" in printed.err
    assert [r["epoch"] for r in result.metrics] == [1, 2, 3]
    assert result.metrics[:2] == resumed.metrics[:2] and result.metrics[2] != resumed.metrics[2]  # only epoch 3 again
    assert {k: v for k, v in fingerprint(tmp_path).items() if not k.startswith("runs")} == data


def test_ctrl_c_during_training_says_how_to_resume(tmp_path):
    """A real SIGINT to the command's process group, as a terminal's Ctrl-C sends it."""
    import signal

    images, labels = make_letters(64, learnable=True)
    csv = write_kaggle_csv(tmp_path / "az.csv", images, labels)
    data = fingerprint(tmp_path)
    storage = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "handvae.cli",
        "train",
        "--letters-csv",
        str(csv),
        "--epochs",
        "1000",
        "--batch-size",
        "16",
        "--num-workers",
        "1",
        "--no-report",
        "--run-name",
        "r",
        "--storage-path",
        str(storage),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
    )
    try:
        for line in process.stdout:
            if "epoch 1/1000" in line:
                break
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    # The one line, and nothing else from Ray (its notes on token authentication and progress bars).
    assert stderr.strip().splitlines() == [
        f"interrupted: to resume after the latest checkpoint, run the same command with --run-name r --storage-path {storage}"
    ]
    assert (
        fingerprint(tmp_path / "runs" / "r")
        and {k: v for k, v in fingerprint(tmp_path).items() if not k.startswith("runs")} == data
    )


@pytest.mark.usefixtures("ray_local")
def test_ctrl_c_in_another_command_is_one_line(tmp_path, tiny_model):
    """generate blocked opening a style image (a FIFO no one writes) when a real SIGINT arrives."""
    import signal
    import threading

    fifo = tmp_path / "style.png"
    os.mkfifo(fifo)
    # To the main thread itself: a signal sent to the process may land in any thread that does not
    # block it (Ray's, here), and the main thread would then stay blocked in open() for good.
    timer = threading.Timer(1.0, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    # Python's own handler, as a command started from a terminal has it: a suite started in the
    # background (`cmd &` in a script) inherits SIGINT ignored, and Python then installs none.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer.start()
    try:
        result = generate_with_styles(tiny_model, tmp_path / "out", fifo)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 130 and result.stderr.strip() == "interrupted", result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("ray_local")
def test_model_actors_load_the_model_file_themselves(tmp_path, tiny_model, monkeypatch):
    """Only the file's path reaches the actors, made absolute: Ray's workers do not share the
    driver's working directory, so a relative --model works only if the actors get it resolved.
    (Ray Data 2.60 itself still logs "Actor ... has constructor arguments in the object store" for
    every actor pool: its own context and transformer are object refs, ray-project/ray#57733.)"""
    shutil.copy(tiny_model, tmp_path / "model.pt")
    csv = write_kaggle_csv(tmp_path / "az.csv", *make_letters(20))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["evaluate", "--model", "model.pt", "--letters-csv", "az.csv", "--out", "report", "--num-workers", "1"]
    )
    assert result.exit_code == 0, result.output
    _, rows = read_all(csv)
    assert (
        json.loads((tmp_path / "report" / "metrics.json").read_text())["images"] == (rows["split"] == "test").sum() > 0
    )
