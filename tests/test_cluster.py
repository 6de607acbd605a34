"""Running on a Ray cluster. cluster.yaml passes Ray's own validation and keeps its security settings;
the job upload leaves out environments and outputs; and the jobs run under `ray job submit` on a real
Ray head with token authentication, on loopback: training, generation from the trained model, a job
that fails on bad data, and clients without the token, which are refused."""

import fnmatch
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as pads
import pytest
import ray
import yaml

from handvae.formats.model_file import load_model_and_metadata

from conftest import free_ports, make_letters, pids_mentioning, ray_node_env, ray_node_flags, write_kaggle_csv

REPO = Path(__file__).resolve().parents[1]
# The ray CLI of the Python running the tests: the head, the jobs and the tests share one environment.
RAY_CLI = shutil.which("ray", path=os.path.dirname(sys.executable))
needs_ray_cli = pytest.mark.skipif(RAY_CLI is None, reason=f"no `ray` command beside {sys.executable}")
JOB_TIMEOUT_S = 240


def end_to_end(test):
    return pytest.mark.ray(needs_ray_cli(test))


def cluster_config() -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((REPO / "cluster.yaml").read_text()))
    validate_config(config)
    return config


def ray_start_command(commands: list[str]) -> str:
    (start,) = [command for command in commands if "ray start" in command]
    return start


def test_cluster_yaml_passes_rays_validation_and_keeps_its_own_commands():
    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config = cluster_config()
    # prepare_config fills what the file leaves out from Ray's AWS defaults (which would install a
    # nightly Ray): every command list must be the file's own.
    for key in ("initialization_commands", "setup_commands", "worker_start_ray_commands", "head_start_ray_commands"):
        assert config[key] == raw[key], key
    assert config["head_setup_commands"] == raw["setup_commands"] + raw["head_setup_commands"]
    assert config["worker_setup_commands"] == raw["setup_commands"] + raw["worker_setup_commands"]
    assert config["provider"]["type"] == "aws"
    # Every local source of a file mount but the user's token is in the repository.
    for remote, local in config["file_mounts"].items():
        if local != "~/.ray/auth_token":
            assert (REPO / local).exists(), (remote, local)
    assert config["setup_commands"] == ["pip install --quiet --no-cache-dir /home/ray/handvae"]
    assert config["file_mounts"]["/home/ray/handvae/pyproject.toml"] == "./pyproject.toml"


def test_every_node_requires_the_token_and_the_dashboard_stays_on_loopback():
    config = cluster_config()
    head = ray_start_command(config["head_start_ray_commands"])
    worker = ray_start_command(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head and "--dashboard-host=127.0.0.1" in head.split()
    assert "RAY_AUTH_MODE=token ray start --address=$RAY_HEAD_IP:6379" in worker
    assert "0.0.0.0" not in json.dumps(config)
    # The same token on every node, from the user's machine (Ray's default token file), not the repo.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "--env=RAY_AUTH_MODE=token" in config["docker"]["run_options"]


def test_image_matches_the_pinned_ray_and_python_and_gpu_workers_scale_from_zero():
    config = cluster_config()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (ray_pin,) = [dep for dep in project["dependencies"] if dep.startswith("ray[")]
    assert ray_pin.endswith(f"=={ray.__version__}") and project["requires-python"] == ">=3.11,<3.12"
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert not any("ray-ml" in str(value) for value in config["docker"].values())

    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["node_config"]["InstanceType"].startswith("m")  # CPU only: drivers and Ray's control plane
    (gpu_worker,) = [t for name, t in types.items() if name != config["head_node_type"]]
    assert gpu_worker["min_workers"] == 0 and gpu_worker["max_workers"] == config["max_workers"] >= 1
    assert gpu_worker["node_config"]["InstanceType"].split(".")[0] in {"g5", "g6"}  # one NVIDIA GPU each
    assert config["docker"]["worker_run_options"] == ["--gpus=all"]


def test_the_head_role_may_launch_the_gpu_workers_as_configured():
    """cluster-iam-policy.json grants the head (role ray-autoscaler-v1, made by `ray up`) what launching
    the GPU workers needs: passing them its role, and resolving their AMI's SSM parameter."""
    config = cluster_config()
    statements = json.loads((REPO / "cluster-iam-policy.json").read_text())["Statement"]
    allowed = [
        (action, resource)
        for s in statements
        for action in s["Action"]
        for resource in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    worker = next(t for name, t in config["available_node_types"].items() if name != config["head_node_type"])[
        "node_config"
    ]
    profile = worker["IamInstanceProfile"]["Name"]
    assert ("iam:PassRole", f"arn:aws:iam::*:role/{profile}") in allowed
    parameter = worker["ImageId"].removeprefix("resolve:ssm:")
    assert any(
        action == "ssm:GetParameter" and fnmatch.fnmatch(f"arn:aws:ssm:us-west-2::parameter{parameter}", resource)
        for action, resource in allowed
    )


def test_the_job_upload_leaves_out_environments_history_and_outputs(tmp_path):
    from ray._private.runtime_env.packaging import create_package

    runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    assert set(runtime_env) == {"excludes"}  # the code comes from --working-dir, the packages from the image
    tree = tmp_path / "repo"
    for name in (
        "handvae/cli.py",
        "jobs/train.py",
        "pyproject.toml",
        ".venv/bin/python",
        ".git/HEAD",
        "runs/exp/model.pt",
        "bench-out/ingest.json",
        "handvae.egg-info/PKG-INFO",
        "handvae/__pycache__/cli.cpython-311.pyc",
    ):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x")
    # Without .gitignore's help (Ray can be told to ignore it): the file's excludes alone do it.
    create_package(str(tree), tmp_path / "tree.zip", include_gitignore=False, excludes=runtime_env["excludes"])
    assert sorted(zipfile.ZipFile(tmp_path / "tree.zip").namelist()) == [
        "handvae/cli.py",
        "jobs/train.py",
        "pyproject.toml",
    ]
    # This repository as `ray job submit --working-dir .` zips it: small, with the entry points.
    create_package(str(REPO), tmp_path / "repo.zip", include_gitignore=True, excludes=runtime_env["excludes"])
    names = zipfile.ZipFile(tmp_path / "repo.zip").namelist()
    assert {"jobs/train.py", "jobs/generate.py", "jobs/evaluate.py", "handvae/cli.py"} <= set(names)
    assert not [n for n in names if n.split("/")[0] in (".venv", ".git", "runs") or "__pycache__" in n]
    assert (tmp_path / "repo.zip").stat().st_size < 5 * 2**20


# --- end to end: a real Ray head with token authentication, jobs submitted with the ray CLI --------


@dataclass(frozen=True)
class Head:
    env: dict  # a client's environment: RAY_ADDRESS (the Jobs API), RAY_AUTH_MODE, RAY_AUTH_TOKEN
    data: Path  # a folder for the jobs' inputs and outputs


def ray_cli(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([RAY_CLI, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head node as cluster.yaml starts it (RAY_AUTH_MODE=token, dashboard on 127.0.0.1), on
    loopback, with a token made here: the machine's ~/.ray/auth_token is neither read nor written."""
    home = tmp_path_factory.mktemp("home")  # HOME for the head and the clients: no token file in it
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's unix socket paths must stay short
    gcs, dashboard, client = free_ports(3)
    env = ray_node_env(home, secrets.token_hex(32))
    start = [
        RAY_CLI,
        "start",
        "--head",
        *ray_node_flags(temp_dir),
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}",
        "--num-cpus=4",
    ]
    log_path = tmp_path_factory.mktemp("head") / "ray-start.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(start, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client_env = {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dashboard}"}
    try:
        deadline = time.monotonic() + 120
        while ray_cli("job", "list", env=client_env).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, (
                f"the head did not start:\n{log_path.read_text()}"
            )
            time.sleep(2)
        yield Head(env=client_env, data=tmp_path_factory.mktemp("jobs"))
    finally:
        _stop_head(process, temp_dir)


def _stop_head(process: subprocess.Popen, temp_dir: str) -> None:
    """`ray start --block` shuts its head down on SIGTERM. Not `ray stop`: that stops every Ray on the
    machine. Whatever outlives it is found by the temporary folder only this head uses, and killed by pid."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)  # measured: it does not end within 30 s either, so SIGKILL soon
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for pid in pids_mentioning(temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)


def submit(env: dict, submission_id: str, script: str, *args: str) -> subprocess.CompletedProcess:
    """docs/cluster.md's command (Jobs): waits for the job, streaming its logs; exit status 0 if it succeeded."""
    return ray_cli(
        "job",
        "submit",
        "--submission-id",
        submission_id,
        "--working-dir",
        ".",
        "--runtime-env",
        "jobs/runtime_env.yaml",
        "--",
        "python",
        script,
        *args,
        env=env,
        timeout=JOB_TIMEOUT_S,
    )


def job_status(head: Head, submission_id: str) -> str:
    """What `ray job status` says: "Job 'ID' succeeded", "... failed", ..."""
    return ray_cli("job", "status", submission_id, env=head.env).stdout


@pytest.fixture(scope="module")
def letters_csv(head):
    images, labels = make_letters(416, learnable=True)
    return write_kaggle_csv(head.data / "az.csv", images, labels)


@pytest.fixture(scope="module")
def trained(head, letters_csv):
    recipe = head.data / "small.toml"
    recipe.write_text("[model]\nnum_filters = 8\nnum_latent = 4\n")
    storage = head.data / "runs"
    result = submit(
        head.env,
        "train-e2e",
        "jobs/train.py",
        "--letters-csv",
        str(letters_csv),
        "--config",
        str(recipe),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--num-workers",
        "2",
        "--no-report",
        "--storage-path",
        str(storage),
        "--run-name",
        "e2e",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result, storage / "e2e"


@end_to_end
def test_training_job_writes_checkpoints_metrics_and_a_model(head, trained):
    result, run_dir = trained
    assert "Job 'train-e2e' succeeded" in job_status(head, "train-e2e")
    assert "epoch 2/2" in result.stdout and f"model: {run_dir}/model.pt" in result.stdout
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    checkpoints = sorted(c for c in run_dir.glob("checkpoint_*") if c.is_dir())
    assert checkpoints and all((c / "train_state.pt").is_file() for c in checkpoints)
    model, metadata = load_model_and_metadata(run_dir / "model.pt")
    assert (model.config.num_filters, model.config.num_latent) == (8, 4) and metadata["epoch"] == 2


@end_to_end
def test_generation_job_draws_with_the_trained_model(head, trained, letters_csv):
    _, run_dir = trained
    out = head.data / "gen"
    result = submit(
        head.env,
        "generate-e2e",
        "jobs/generate.py",
        "--model",
        str(run_dir / "model.pt"),
        "--letters-csv",
        str(letters_csv),
        "--num-styles",
        "3",
        "--chars",
        "AB",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Job 'generate-e2e' succeeded" in job_status(head, "generate-e2e")
    assert (out / "_SUCCESS").is_file()
    table = pads.dataset(str(out), format="parquet", exclude_invalid_files=True).to_table()
    assert table.num_rows == 3 * 2 and sorted(set(table.column("char").to_pylist())) == ["A", "B"]


@end_to_end
def test_a_job_with_bad_data_fails_with_the_error_in_its_logs(head):
    result = submit(
        head.env,
        "bad-data",
        "jobs/train.py",
        "--letters-csv",
        "/nonexistent.csv",
        "--epochs",
        "1",
        "--no-report",
        "--storage-path",
        str(head.data / "runs"),
        "--run-name",
        "bad",
    )
    assert result.returncode != 0
    assert "Job 'bad-data' failed" in job_status(head, "bad-data")
    logs = ray_cli("job", "logs", "bad-data", env=head.env).stdout
    assert "error: /nonexistent.csv" in logs and "not found" in logs and "Traceback" not in logs


@end_to_end
def test_clients_without_the_token_are_refused(head, tmp_path):
    # No token in the environment, none in HOME/.ray/auth_token.
    without = {k: v for k, v in head.env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")} | {
        "HOME": str(tmp_path)
    }
    refused = submit(without, "no-token", "jobs/train.py", "--epochs", "1")  # sends no token: the cluster answers 401
    assert refused.returncode != 0 and "Authentication required" in refused.stdout + refused.stderr
    unsent = ray_cli(
        "job", "list", env={**without, "RAY_AUTH_MODE": "token"}
    )  # a token client with no token stops here
    assert unsent.returncode != 0 and "couldn't find an authentication token" in unsent.stderr
    wrong = ray_cli("job", "list", env={**head.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)})  # 403
    assert wrong.returncode != 0 and "Authentication failed" in wrong.stdout + wrong.stderr
    assert "no-token" not in ray_cli("job", "list", env=head.env).stdout
