"""The output policy (handvae.formats.outputs) with real runs: a run killed midway and a second run started
while one writes, locally and on an S3 server (moto's, started by the fixture); evaluation reports
to a URI; and the cases where a command used to delete the user's files (issue 15), each refused
with exit status 2, a message naming the path, and every file still there."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from handvae import storage
from handvae.cli import app
from handvae.data.sources import DataSources
from handvae.generate.driver import GenerateOptions, run_generation

from conftest import make_mnist_root, save_tiny_model

pytestmark = pytest.mark.usefixtures("ray_local")
REPO = Path(__file__).resolve().parents[1]
QUICK = ["--num-styles", "4", "--chars", "AB7"]  # 12 rows
QUICK_OPTIONS = GenerateOptions(num_styles=4, chars="AB7")
# Long enough to be caught midway: every training style of the bundled sample (~2,800), a file per
# model call of 64 styles x 36 characters: ~45 files.
LONG = ["--split", "train", "--pairing", "every-style", "--rows-per-file", "1", "--num-workers", "1"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


def start_generate(model_path: str, out: str, *flags: str) -> subprocess.Popen:
    """`handvae generate` in a process group of its own (its embedded Ray with it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "handvae.cli", "generate", "--model", model_path, "--out", out, *flags]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"the run ended before {what}: {process.stdout.read()}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def runs_under(out: str) -> dict[str, list[str]]:
    """Run prefix -> its files, under OUT/data."""
    files, _ = storage.list_tree(storage.join(out, "data"))
    runs: dict[str, list[str]] = {}
    for name in files:
        run, _, rest = name.partition("/")
        runs.setdefault(run, []).append(rest)
    return runs


def documented_read(out: str) -> pd.DataFrame:
    """The documented way: only when _SUCCESS exists, the files the manifest names."""
    assert storage.is_file(storage.join(out, "_SUCCESS"))
    manifest = json.loads(storage.read_bytes(storage.join(out, "manifest.json")))
    fs, path = storage.resolve(storage.join(out, manifest["data_dir"]))
    frame = pd.read_parquet(path, filesystem=fs)
    assert len(frame) == manifest["rows"] == sum(manifest["file_rows"])
    return frame.sort_values(["style_id", "label"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def quick_local(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs") / "quick"
    return str(out), run_generation(model_path, DataSources(), str(out), QUICK_OPTIONS)


def test_a_second_run_is_refused_while_one_writes_and_a_killed_run_is_never_read(model_path, quick_local, tmp_path):
    out = str(tmp_path / "gen")
    first = run_generation(model_path, DataSources(), out, QUICK_OPTIONS)  # a complete output to replace
    writing = start_generate(model_path, out, *LONG)

    def written() -> dict[str, int]:
        return {
            run: sum(name.endswith(".parquet") for name in files)
            for run, files in runs_under(out).items()
            if run != first["run"]
        }

    run = wait_for(
        lambda: next((run for run, count in written().items() if count), None), "the run wrote a file", writing
    )
    os.kill(writing.pid, signal.SIGSTOP)  # mid-run (after Ray's start, which a stopped driver would miss)
    try:
        second = CliRunner().invoke(app, ["generate", "--model", model_path, "--out", out, *QUICK])
        files_then = written()[run]
    finally:
        os.kill(writing.pid, signal.SIGCONT)
    assert (
        second.exit_code == 2
        and f"error: {out}: another handvae run is writing this output (run {run}, process {writing.pid}"
        in second.output
    )
    # The refused run deleted nothing: the first one goes on writing its files.
    wait_for(lambda: written()[run] > files_then, "the first run wrote another file", writing)
    kill(writing)

    # Killed midway: readers still see the earlier output, whole; the killed run's files are named by nothing.
    assert json.loads(Path(out, "manifest.json").read_text())["run"] == first["run"]
    assert documented_read(out).equals(documented_read(quick_local[0]))
    assert f"data/{run}/" not in Path(out, "README.md").read_text()

    again = run_generation(model_path, DataSources(), out, QUICK_OPTIONS)
    assert runs_under(out) == {
        again["run"]: ["_handvae_run.json", "train-00000.parquet"]
    }  # the killed run's and the first run's files are gone
    assert sorted(os.listdir(out)) == ["README.md", "_SUCCESS", "data", "manifest.json", "sheet.png"]  # no lock left
    assert documented_read(out).equals(documented_read(quick_local[0]))


def test_on_s3_a_killed_run_then_a_rerun_leave_one_complete_output(model_path, quick_local, s3_bucket):
    out = f"{s3_bucket}/generated/quick"
    killed = start_generate(model_path, out, *LONG)
    wait_for(
        lambda: any(name.endswith(".parquet") for files in runs_under(out).values() for name in files),
        "a file on S3",
        killed,
    )
    kill(killed)
    assert not storage.is_file(f"{out}/_SUCCESS") and storage.is_file(
        f"{out}/.handvae.lock"
    )  # nothing complete; its lock left

    run_generation(model_path, DataSources(), out, QUICK_OPTIONS)  # takes over the lock of a dead process
    manifest = json.loads(storage.read_bytes(f"{out}/manifest.json"))
    assert manifest["format"] == "handvae.generated" and manifest["rows"] == 12
    assert runs_under(out) == {manifest["run"]: ["_handvae_run.json", "train-00000.parquet"]}
    assert not storage.exists(f"{out}/.handvae.lock")
    s3_rows, local_rows = documented_read(out), documented_read(quick_local[0])
    assert s3_rows.drop(columns="image").equals(local_rows.drop(columns="image"))
    assert [i["bytes"] for i in s3_rows["image"]] == [i["bytes"] for i in local_rows["image"]]


def test_evaluation_reports_go_to_s3_and_replace_only_their_own(model_path, s3_bucket, tmp_path):
    out = f"{s3_bucket}/reports/one"
    make_mnist_root(tmp_path / "mnist", train=2, test=12)
    runner = CliRunner()
    for _ in range(2):  # written, then replaced
        result = runner.invoke(
            app,
            [
                "evaluate",
                "--model",
                model_path,
                "--out",
                out,
                "--num-workers",
                "1",
                "--mnist-dir",
                str(tmp_path / "mnist"),
            ],
        )
        assert result.exit_code == 0, result.output
        assert f"report: {out}/report.md" in result.output
    files, _ = storage.list_tree(out)
    manifest = json.loads(storage.read_bytes(f"{out}/manifest.json"))
    assert manifest["format"] == "handvae.report" and sorted(manifest["files"] + ["_SUCCESS", "manifest.json"]) == files
    assert json.loads(storage.read_bytes(f"{out}/metrics.json"))["split"] == "test"

    storage.write_bytes(f"{s3_bucket}/theirs/metrics.json", b"{}")
    refused = runner.invoke(app, ["evaluate", "--model", model_path, "--out", f"{s3_bucket}/theirs"])
    assert refused.exit_code == 2 and f"{s3_bucket}/theirs: exists and is not a handvae report output" in refused.output
    assert storage.list_tree(f"{s3_bucket}/theirs")[0] == ["metrics.json"]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_users_files_are_never_deleted(model_path, tmp_path, monkeypatch):
    runner = CliRunner()

    # A folder with a _SUCCESS that handvae did not write (Spark, Hadoop, anything).
    spark = tmp_path / "spark"
    (spark / "sub").mkdir(parents=True)
    for name, content in (("_SUCCESS", b""), ("part-00000.parquet", b"theirs"), ("sub/notes.txt", b"mine")):
        (spark / name).write_bytes(content)
    before = tree(spark)
    result = runner.invoke(app, ["generate", "--model", model_path, "--out", str(spark), *QUICK])
    assert result.exit_code == 2 and f"error: {spark}: exists and is not a handvae generated output" in result.output
    result = runner.invoke(app, ["prepare", "--mnist-dir", str(tmp_path / "none"), "--out", str(spark), "--overwrite"])
    assert result.exit_code == 2 and f"error: {spark}: exists and is not a handvae prepared output" in result.output
    assert tree(spark) == before

    # evaluate --out . in a folder that holds a metrics.json, other files and a sub-folder.
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    for name in ("metrics.json", "thesis.tex", "data/scan.png"):
        (work / name).write_text(name)
    before = tree(work)
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["evaluate", "--model", model_path, "--out", "."])
    assert result.exit_code == 2 and f"error: {work}: is the current directory or holds it" in result.output
    result = runner.invoke(app, ["evaluate", "--model", model_path, "--out", ".."])
    assert result.exit_code == 2 and f"error: {tmp_path}: is the current directory or holds it" in result.output
    assert tree(work) == before

    # An output that holds an input (here the model), and one that cannot be written.
    result = runner.invoke(app, ["generate", "--model", model_path, "--out", str(Path(model_path).parent), *QUICK])
    assert result.exit_code == 2 and f"error: {Path(model_path).parent}: holds the input {model_path}" in result.output
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    result = runner.invoke(app, ["generate", "--model", model_path, "--out", str(blocked / "out"), *QUICK])
    assert result.exit_code == 2 and result.output.startswith(f"error: {blocked / 'out'}: cannot be written")
    assert "Traceback" not in result.output and blocked.read_text() == "not a folder"
