"""What a new user and hostile input hit (issue 34): wrong outcomes fixed, and each class of unclear
failure turned into one `error:` line naming the file, flag or field and what was expected, exit
status 2, no traceback; most of them before Ray starts."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_hostile_inputs import assert_user_error, fingerprint, write_checkpoint
from test_streaming import write_generated
from typer.testing import CliRunner

from handvae.cli import app
from handvae.errors import ConfigError
from handvae.formats import dataset_output, outputs
from handvae.formats.dataset_folder import RUN_FILE
from handvae.model.steps import NonFiniteLoss, train_steps
from handvae.model.vae import VAE
from handvae.train.config import TrainConfig

from conftest import free_ports, make_letters, save_tiny_model

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture
def no_ray(monkeypatch):
    """Refused before Ray starts: starting it fails the test."""
    import ray

    def started(*args, **kwargs):
        raise AssertionError("Ray was started before the input was checked")

    monkeypatch.setattr(ray, "init", started)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def folder_of(tmp_path: Path, name: str, count: int = 72) -> Path:
    images, labels = make_letters(count, learnable=True)
    return write_generated(tmp_path / name, images, labels + 10, files=2)


# ---- wrong outcomes ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["data", "train"])
def test_a_manifest_listing_a_file_twice_is_refused_naming_it(tmp_path, no_ray, command):
    folder = folder_of(tmp_path, "twice")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"].append(manifest["files"][0])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    extra = ["--storage-path", str(tmp_path / "runs")] if command == "train" else []
    result = invoke(command, "--dataset", str(folder), *extra)
    assert_user_error(result, f"{folder}/manifest.json: lists data/part-00000.parquet 2 times")
    assert not (tmp_path / "runs").exists()


def _generated_run(out: Path, files: int = 1) -> str:
    """A committed generation run into OUT (its parquet files written as generation names them)."""
    with dataset_output.dataset_output(str(out), []) as run:
        names = [RUN_FILE.format(index) for index in range(files)]
        for name in names:
            Path(run.prefix, name).write_bytes(b"PAR1")
        run.commit(names, {"rows": files}, {})
    return run.run


def test_a_generate_rerun_deletes_only_what_its_manifest_lists(tmp_path):
    out = tmp_path / "out"
    first = _generated_run(out, files=2)
    mine = out / "data" / first / "mine.txt"
    mine.write_text("my notes")
    killed = out / "data" / "20260101T000000Z-deadbeef"  # a killed run: its marker and a file, and a user's file
    killed.mkdir()
    (killed / outputs.RUN_MARKER).write_text("{}")
    (killed / RUN_FILE.format(0)).write_bytes(b"PAR1")
    (killed / "also-mine.txt").write_text("mine too")

    second = _generated_run(out)

    assert mine.read_text() == "my notes" and (killed / "also-mine.txt").read_text() == "mine too"
    assert sorted(p.name for p in (out / "data" / first).iterdir()) == [
        "mine.txt"
    ]  # its own files gone, the marker too
    assert sorted(p.name for p in killed.iterdir()) == ["also-mine.txt"]
    assert json.loads((out / "manifest.json").read_text())["files"] == [f"data/{second}/{RUN_FILE.format(0)}"]
    third = _generated_run(out)  # folders holding only a user's file are no run's: left alone again
    assert mine.exists() and not (out / "data" / second).exists() and (out / "data" / third).is_dir()


def test_a_training_step_with_a_non_finite_loss_stops_before_the_optimizer_steps():
    config = TrainConfig.from_dict(
        {"batch_size": 8, "model": {"num_filters": 4, "num_latent": 3}, "loss": {"cat_weight": 1e300}}
    )
    torch.manual_seed(0)
    model = VAE(config.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = make_letters(16)
    batches = [(torch.from_numpy(images[i : i + 8]), torch.from_numpy(labels[i : i + 8]).long()) for i in (0, 8)]
    with pytest.raises(NonFiniteLoss) as stop:
        train_steps(model, torch.optim.Adam(model.parameters()), batches, 1, config)
    assert (
        stop.value.step == 1
        and list(stop.value.terms) == ["cat_loss"]
        and stop.value.terms["cat_loss"].startswith("1e+300 x ")
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the weights stay finite"


@pytest.mark.parametrize("weight", ["inf", "nan", "-inf"])
@pytest.mark.parametrize("field", ["cat_weight", "kl_step", "kl_max", "detail_kl_weight"])
def test_a_loss_weight_that_cannot_be_a_weight_is_refused_up_front(field, weight):
    with pytest.raises(ConfigError, match=f"LossWeights.{field} must be a finite number >= 0, got {weight}"):
        TrainConfig.from_dict({"loss": {field: float(weight)}})


@pytest.mark.usefixtures("ray_local")
def test_training_stops_at_the_first_non_finite_loss_and_exports_no_model(tmp_path):
    folder = folder_of(tmp_path, "letters")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("batch_size = 8\n[model]\nnum_filters = 4\nnum_latent = 3\n[loss]\ncat_weight = 1e300\n")
    result = invoke(
        "train",
        "--dataset",
        str(folder),
        "--config",
        str(recipe),
        "--epochs",
        "2",
        "--num-workers",
        "1",
        "--no-report",
        "--storage-path",
        str(tmp_path / "runs"),
        "--run-name",
        "r",
    )
    assert_user_error(
        result,
        "training stopped at epoch 1, step 1: the loss is not finite (cat_loss = 1e+300 x ",
        "no model file was written",
        "--learning-rate",
    )
    run = tmp_path / "runs" / "r"
    assert not (run / "model.pt").exists()
    for line in (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []:
        json.loads(line)  # valid JSON: no bare NaN


def test_resuming_a_finished_run_with_fewer_epochs_is_refused(tmp_path, no_ray):
    from dataclasses import replace

    from handvae.train.config import resolve_config

    write_checkpoint(tmp_path / "r", 3, config=replace(resolve_config(), epochs=3, num_workers=1))
    before = fingerprint(tmp_path)
    result = invoke("train", "--storage-path", str(tmp_path), "--run-name", "r", "--epochs", "2", "--num-workers", "1")
    assert_user_error(result, f"{tmp_path / 'r'} has trained 3 epochs already", "--epochs 2", "give --epochs 3 or more")
    assert fingerprint(tmp_path) == before


@pytest.mark.parametrize(
    "args,flag",
    [
        (["data", "--letters-csv", ""], "--letters-csv"),
        (["data", "--dataset", ""], "--dataset"),
        (["data", "--mnist-dir", " "], "--mnist-dir"),
        (["train", "--dataset", ""], "--dataset"),
        (["train", "--prepared", ""], "--prepared"),
        (["train", "--storage-path", ""], "--storage-path"),
        (["train", "--config", ""], "--config"),
        (["evaluate", "--model", "", "--out", "o"], "--model"),
        (["evaluate", "--model", "m.pt", "--out", "o", "--letters-csv", ""], "--letters-csv"),
        (["generate", "--model", "m.pt", "--out", ""], "--out"),
        (["score", "--dataset", "", "--out", "o"], "--dataset"),
        (["prepare", "--out", ""], "--out"),
    ],
)
def test_an_empty_path_is_an_error_not_the_bundled_sample(tmp_path, no_ray, monkeypatch, args, flag):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert_user_error(result, f"{flag} is an empty path")
    assert list(tmp_path.iterdir()) == []


# ---- unclear: ranges the libraries underneath accept -------------------------------------------


@pytest.mark.parametrize(
    "args,said",
    [
        (["train", "--seed", str(2**64)], f"seed must be an integer in [0, {2**32 - 1:,}], got {2**64}"),
        (["train", "--epochs", str(10**30)], "epochs must be an integer in [1, 1,000,000,000]"),
        (["train", "--max-failures", "-1"], "max_failures must be an integer in [0, 1,000]"),
        (["data", "--split-seed", str(2**64)], "--split-seed must be an integer in [0, "),
        (["generate", "--num-styles", str(10**30)], "--num-styles must be an integer in [1, 1,000,000,000]"),
        (["generate", "--samples-per-style", "40000"], "--samples-per-style must be an integer in [1, 32,767]"),
        (["generate", "--seed", "-1"], "--seed must be an integer in [0, "),
        (["evaluate", "--seed", str(2**40)], "--seed must be an integer in [0, "),
        (["evaluate", "--styles-per-class", str(10**30)], "--styles-per-class must be an integer in [1, "),
    ],
)
def test_values_out_of_range_are_refused_where_given(tmp_path, no_ray, model_file, args, said):
    command, *flags = args
    where = {"train": ["--storage-path", str(tmp_path / "runs")], "data": []}.get(
        command, ["--model", model_file, "--out", str(tmp_path / "o")]
    )
    assert_user_error(invoke(command, *where, *flags), said)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "o").exists()


def test_a_model_size_out_of_range_in_a_config_file_is_refused(tmp_path, no_ray):
    recipe = tmp_path / "big.toml"
    recipe.write_text(f"[model]\nnum_filters = {10**30}\n")
    assert_user_error(
        invoke("train", "--config", str(recipe), "--storage-path", str(tmp_path)),
        "VAEConfig.num_filters must be an integer in [1, 4096]",
    )


# ---- unclear: resources that fail at run time --------------------------------------------------


@pytest.mark.parametrize("where", ["/sys/handvae-runs", "/proc/handvae-runs"])
def test_a_storage_path_that_cannot_be_written_is_one_line_before_ray_starts(where, no_ray):
    result = invoke("train", "--storage-path", where, "--run-name", "r", "--num-workers", "1")
    assert_user_error(result, f"{where}/r: cannot be written", "give a --storage-path you can write to")


@pytest.mark.parametrize("command", ["train", "generate"])
def test_an_object_store_that_refuses_is_one_line(tmp_path, s3_server, no_ray, model_file, command):
    missing = "s3://no-such-bucket-handvae/x"
    args = (
        ["train", "--storage-path", missing, "--no-report", "--num-workers", "1"]
        if command == "train"
        else ["generate", "--model", model_file, "--out", missing]
    )
    result = invoke(*args)
    assert_user_error(result, "no-such-bucket-handvae")


@pytest.fixture(scope="module")
def refusing_s3():
    """An S3-protocol server that checks credentials (moto's server mode with its IAM checks from the
    first request, in its own process so that the session's lenient server stays as it is)."""
    port = free_ports(1)[0]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            break
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.parametrize("command", ["data", "train", "generate"])
def test_credentials_the_object_store_refuses_are_one_line(refusing_s3, monkeypatch, no_ray, model_file, command):
    monkeypatch.setenv("AWS_ENDPOINT_URL", refusing_s3)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    args, named = {
        "data": (["data", "--letters-csv", "s3://handvae-private/az.csv"], "az.csv"),
        "train": (
            ["train", "--storage-path", "s3://handvae-private/runs", "--no-report", "--num-workers", "1"],
            "handvae-private",
        ),
        "generate": (
            ["generate", "--model", model_file, "--out", "s3://handvae-private/out"],
            "s3://handvae-private/out",
        ),
    }[command]
    result = invoke(*args)
    assert_user_error(result, named)
    assert "ACCESS_DENIED" in result.stderr or "INVALID_ACCESS_KEY_ID" in result.stderr


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs: a disk that fills up (needs the right to mount, as root in a container has)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.usefixtures("ray_local")
def test_a_full_disk_while_generating_is_one_line_naming_the_file(tiny_disk, model_file):
    result = invoke(
        "generate",
        "--model",
        model_file,
        "--out",
        str(tiny_disk / "out"),
        "--split",
        "train",
        "--pairing",
        "every-style",
        "--num-workers",
        "1",
        "--rows-per-file",
        "64",
    )
    assert result.exit_code == 2, result.output
    *progress, last = result.stderr.strip().splitlines()  # progress lines, then the error
    assert all(line.startswith("generated ") for line in progress), result.stderr
    assert last.startswith(f"error: {tiny_disk / 'out'}/data/") and last.endswith(
        ".parquet: No space left on device; free some space there, or give another location"
    ), last
    assert not (tiny_disk / "out").exists(), "OUT as it was: absent"


# ---- unclear: data set columns with nulls, folders without rows --------------------------------


def _sample_with_a_null(tmp_path: Path, split: str, column: str, row: int) -> tuple[Path, Path]:
    """A copy of the bundled sample (a prepared folder) whose `split` file holds a null in `column` at
    `row`: the folder and that file."""
    from handvae.data.sources import sample_dir

    folder = tmp_path / "prepared"
    shutil.copytree(sample_dir(), folder)
    part = folder / split / "part-0.parquet"
    table = pq.read_table(part)
    values = table.column(column).to_pylist()
    values[row] = None
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, pa.array(values, table.schema.field(column).type)), part)
    return folder, part


def test_a_null_split_is_named_by_row(tmp_path, no_ray):
    folder, part = _sample_with_a_null(tmp_path, "train", "split", 5)
    assert_user_error(
        invoke("data", "--dataset", str(folder)), f"{part}, row 5: `split` is null; expected train or test"
    )


@pytest.mark.usefixtures("ray_local")
def test_a_null_source_in_a_prepared_folder_is_named(tmp_path):
    folder, part = _sample_with_a_null(tmp_path, "test", "source", 3)
    assert_user_error(invoke("data", "--dataset", str(folder)), str(part), "1 nulls in `source`")


@pytest.mark.parametrize("command", ["data", "train", "evaluate"])
def test_a_folder_whose_files_hold_no_rows_is_refused_by_every_command(tmp_path, no_ray, model_file, command):
    folder = folder_of(tmp_path, "empty", count=36)
    for name in json.loads((folder / "manifest.json").read_text())["files"]:
        table = pq.read_table(folder / name)
        pq.write_table(table.slice(0, 0), folder / name)
    args = {
        "data": [],
        "train": ["--storage-path", str(tmp_path / "runs")],
        "evaluate": ["--model", model_file, "--out", str(tmp_path / "o")],
    }[command]
    flag = "--prepared" if command == "evaluate" else "--dataset"
    assert_user_error(invoke(command, flag, str(folder), *args), f"{folder}: its parquet files hold no rows")


# ---- unclear: a path of the wrong kind ---------------------------------------------------------


def test_paths_of_the_wrong_kind_say_what_was_expected(tmp_path, no_ray, model_file):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    binary = tmp_path / "letters.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    afile = tmp_path / "a-file"
    afile.write_text("x")
    out = str(tmp_path / "o")
    cases = [
        (["evaluate", "--model", str(folder), "--out", out], f"{folder}: a folder, expected the model file"),
        (["generate", "--model", str(folder), "--out", out], f"{folder}: a folder, expected the model file"),
        (["data", "--letters-csv", str(binary)], f"{binary}: not a text file (byte 1 is b'\\x00')"),
        (["data", "--dataset", str(afile)], f"{afile}: a file, expected the data set folder"),
        (["data", "--mnist-dir", str(afile)], f"{afile}: a file, expected the MNIST folder"),
        (
            ["train", "--config", str(folder), "--storage-path", str(tmp_path / "runs")],
            f"{folder}: a folder, expected a TOML or JSON config file",
        ),
        (
            ["evaluate", "--model", model_file, "--out", out, "--judge", str(folder)],
            f"{folder}: a folder, expected the judge file",
        ),
    ]
    for args, said in cases:
        assert_user_error(invoke(*args), said)


def test_duplicate_characters_in_chars_are_refused(tmp_path, no_ray, model_file):
    result = invoke("generate", "--model", model_file, "--out", str(tmp_path / "o"), "--chars", "ABA")
    assert_user_error(result, "--chars: 'A' is given 2 times; give each character once")
    result = invoke("generate", "--model", model_file, "--out", str(tmp_path / "o"), "--chars", "0123456789" * 2)
    assert_user_error(result, "--chars: '0' is given 2 times")
    assert not (tmp_path / "o").exists()


# ---- a run that succeeds reads as one ----------------------------------------------------------


@pytest.mark.ray
def test_train_with_its_report_and_generate_print_no_error_line(tmp_path):
    """The README's main command (`handvae train` on the bundled sample, with its report: an
    evaluation), shortened to one epoch, then a generation from its model: no ERROR line from Ray's
    core worker ("... has constructor arguments in the object store ..."), no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "handvae.cli"]
    train = subprocess.run(
        [
            *command,
            "train",
            "--epochs",
            "1",
            "--num-workers",
            "1",
            "--storage-path",
            str(tmp_path / "runs"),
            "--run-name",
            "r",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
    model = tmp_path / "runs" / "r" / "model.pt"
    generate = subprocess.run(
        [
            *command,
            "generate",
            "--model",
            str(model),
            "--out",
            str(tmp_path / "gen"),
            "--num-styles",
            "2",
            "--chars",
            "AB7",
            "--num-workers",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert generate.returncode == 0, generate.stderr
    for run in (train, generate):
        output = run.stdout + run.stderr
        assert "ERROR" not in output and " E " not in output and "Traceback" not in output, output
        assert "\x1b[" not in output, output  # captured, not a terminal: no colour codes
    assert "(RayTrainWorker pid=" in train.stdout + train.stderr  # the worker's lines, with their prefix
    assert (tmp_path / "runs" / "r" / "report" / "report.md").exists() and (tmp_path / "gen" / "_SUCCESS").exists()
