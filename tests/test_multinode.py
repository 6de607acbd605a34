"""handvae on a Ray cluster of three nodes that share no files, only an S3 bucket: a head and two
worker nodes started here as separate `ray start` processes (each its own temporary folder, ports,
one CPU and a resource naming it), token authentication as cluster.yaml starts them, the moto S3
server as the bucket, and every job submitted with `ray job submit` as the README's Cluster
section does. Training puts its 2 workers on 2 nodes and writes checkpoints, metrics and the model
to S3; generation and evaluation read the model from S3, run actors on two nodes and write to S3.
Faults as they happen: a worker node SIGKILLed mid-epoch (training resumes from its checkpoint,
to the same weights), a model actor's node SIGKILLed during generation (the data set is whole and
the same), `ray job stop` (nothing half-written is visible; the next run succeeds). Local paths
that other nodes cannot see are refused before anything starts.

One cluster for the module (starting nodes on 2 cores takes most of a minute), tiny data."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from handvae import storage
from handvae.formats.checkpoints import FAULT_MARKER
from handvae.formats.outputs import RUN_MARKER
from handvae.generate.worker import Drawer
from handvae.train.worker import FAULT_INJECTION_ENV

from conftest import (
    assert_same_weights,
    free_ports,
    make_letters,
    pids_mentioning,
    ray_node_env,
    ray_node_flags,
    write_kaggle_csv,
)

REPO = Path(__file__).resolve().parents[1]
RAY_CLI = shutil.which("ray", path=os.path.dirname(sys.executable))
pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(RAY_CLI is None, reason=f"no `ray` command beside {sys.executable}"),
]
JOB_TIMEOUT_S = 300
WORKER_NODES = ("node_a", "node_b")


def _descendants(root: int) -> list[int]:
    """`root` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            pass
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


class Cluster:
    """Ray nodes as `ray start --block` processes on 127.0.0.1, and a client's view of them: the
    Jobs and state APIs over HTTP with the token, the ray CLI for what the README runs."""

    def __init__(self, home: Path):
        self.token = secrets.token_hex(32)
        self.gcs, self.dashboard = free_ports(2)
        # The GCS declares a lost node dead after `failure_threshold` health checks in a row have failed,
        # `period_ms` apart (Ray's defaults: 5 x 3 s); a killed node refuses them at once, so 3 x 1 s finds
        # it sooner, and a busy one still has each check's 10 s timeout to answer.
        self.node_env = ray_node_env(home, self.token) | {
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }
        self.client_env = self.node_env | {"RAY_ADDRESS": f"http://127.0.0.1:{self.dashboard}"}
        self.nodes: dict[str, tuple[subprocess.Popen, str]] = {}  # name -> (its `ray start`, its temp folder)
        self.log_dir = home

    def start_node(self, name: str) -> None:
        temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's unix socket paths must stay short
        common = [
            *ray_node_flags(temp_dir),
            "--num-cpus=1",
            f"--resources={json.dumps({name: 1})}",
            "--object-store-memory=150000000",
        ]
        if name == "head":
            role = [
                "--head",
                f"--port={self.gcs}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard}",
                f"--ray-client-server-port={free_ports(1)[0]}",
            ]
        else:
            role = [f"--address=127.0.0.1:{self.gcs}"]
        with open(self.log_dir / f"{name}-{len(self.nodes)}.log", "w") as log:
            process = subprocess.Popen(
                [RAY_CLI, "start", *role, *common],
                env=self.node_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.nodes[name] = (process, temp_dir)

    def wait_for_nodes(self, names, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if set(names) <= set(self.alive_nodes().values()):
                    return
            except OSError:  # the dashboard is not up yet
                pass
            for name in names:
                assert self.nodes[name][0].poll() is None, f"node {name} did not start: see {self.log_dir}"
            assert time.monotonic() < deadline, f"nodes {names} not up in {timeout} s: see {self.log_dir}"
            time.sleep(1)

    def kill_node(self, name: str) -> None:
        """The node lost as a machine is: SIGKILL to its `ray start`, raylet, agents and workers at once."""
        process, temp_dir = self.nodes.pop(name)
        pids = set(_descendants(process.pid)) | set(pids_mentioning(temp_dir))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)

    def nodes_running(self, title: str) -> list[str]:
        """The nodes with a process whose title (Ray sets it: "ray::CLASS.method") holds `title`,
        seen in /proc as `ps` shows them: at once, where Ray's state API lags by seconds."""
        found = []
        for name, (process, _) in self.nodes.items():
            for pid in _descendants(process.pid):
                try:
                    if title.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                        found.append(name)
                        break
                except OSError:
                    pass
        return found

    def shutdown(self) -> None:
        for name in [n for n in self.nodes if n != "head"] + ["head"]:
            if name in self.nodes:
                self.kill_node(name)

    # --- the client's side -----------------------------------------------------------------------

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.dashboard}{path}", method=method, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def alive_nodes(self) -> dict[str, str]:
        """Node id -> the name in its resources, for the nodes alive now."""
        nodes = self.api("/api/v0/nodes?detail=1&limit=100")["data"]["result"]["result"]
        return {n["node_id"]: _node_name(n["resources_total"]) for n in nodes if n["state"] == "ALIVE"}

    def node_names(self) -> dict[str, str]:
        nodes = self.api("/api/v0/nodes?detail=1&limit=100")["data"]["result"]["result"]
        return {n["node_id"]: _node_name(n["resources_total"]) for n in nodes}

    def actor_nodes(self, submission_id: str, class_name: str, alive_only: bool = False) -> list[str]:
        """The names of the nodes the job's actors of that class ran on, one per actor."""
        job_id = self.job(submission_id)["job_id"]
        actors = self.api("/api/v0/actors?detail=1&limit=10000")["data"]["result"]["result"]
        names = self.node_names()
        return sorted(
            names[a["node_id"]]
            for a in actors
            if a["job_id"] == job_id
            and class_name in a["class_name"]
            and a["node_id"]
            and (a["state"] == "ALIVE" or not alive_only)
        )

    def submit(self, submission_id: str, script: str, *args: str, runtime_env: str = "jobs/runtime_env.yaml") -> None:
        """The README's `ray job submit`, without waiting (--no-wait)."""
        command = [
            RAY_CLI,
            "job",
            "submit",
            "--submission-id",
            submission_id,
            "--no-wait",
            "--working-dir",
            ".",
            "--runtime-env",
            runtime_env,
            "--",
            "python",
            script,
            *args,
        ]
        result = subprocess.run(
            command, cwd=REPO, env=self.client_env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def job(self, submission_id: str) -> dict:
        return self.api(f"/api/jobs/{submission_id}")

    def logs(self, submission_id: str) -> str:
        return self.api(f"/api/jobs/{submission_id}/logs")["logs"]

    def wait(self, submission_id: str, timeout: float = JOB_TIMEOUT_S) -> str:
        """The job's final status: SUCCEEDED, FAILED or STOPPED."""
        deadline = time.monotonic() + timeout
        while (status := self.job(submission_id)["status"]) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.monotonic() < deadline, (
                f"job {submission_id} still {status} after {timeout} s:\n{self.logs(submission_id)}"
            )
            time.sleep(1)
        return status

    def run(self, submission_id: str, script: str, *args: str, **kwargs) -> str:
        """Submit, wait; the job's logs, asserting that it succeeded."""
        self.submit(submission_id, script, *args, **kwargs)
        status = self.wait(submission_id)
        logs = self.logs(submission_id)
        assert status == "SUCCEEDED", logs
        return logs


def _node_name(resources: dict) -> str:
    (name,) = [key for key in resources if key == "head" or key in WORKER_NODES]
    return name


def wait_until(condition, what: str, timeout: float = JOB_TIMEOUT_S, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)
    return value


@pytest.fixture(scope="module")
def cluster(s3_bucket, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster-home"))
    try:
        cluster.start_node("head")
        cluster.wait_for_nodes(["head"])
        for name in WORKER_NODES:
            cluster.start_node(name)
        cluster.wait_for_nodes(["head", *WORKER_NODES])
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def inputs(s3_bucket, tmp_path_factory):
    """The letters CSV in the bucket (where every node reads it); the recipe file is the driver's."""
    images, labels = make_letters(416, learnable=True)
    local = write_kaggle_csv(tmp_path_factory.mktemp("data") / "az.csv", images, labels)
    csv = f"{s3_bucket}/multinode/az.csv"
    storage.write_bytes(csv, local.read_bytes())
    recipe = local.parent / "small.toml"
    recipe.write_text("[model]\nnum_filters = 8\nnum_latent = 4\ndetail_latent = 4\n")
    return {"csv": csv, "recipe": str(recipe), "runs": f"{s3_bucket}/multinode/runs", "bucket": s3_bucket}


def train_args(inputs: dict, run_name: str) -> list[str]:
    flags = "--epochs 2 --batch-size 16 --num-workers 2 --max-failures 2 --no-report"
    return ["--letters-csv", inputs["csv"], "--config", inputs["recipe"], *flags.split(), "--run-name", run_name,
            "--storage-path", inputs["runs"]]  # fmt: skip


def epochs_recorded(run: str) -> list[int]:
    return [json.loads(line)["epoch"] for line in storage.read_bytes(f"{run}/metrics.jsonl").decode().splitlines()]


def runtime_env_with(tmp_path: Path, env_vars: dict) -> str:
    """jobs/runtime_env.yaml and these environment variables for the job (driver and workers)."""
    runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text()) | {"env_vars": env_vars}
    path = tmp_path / "runtime_env.yaml"
    path.write_text(yaml.safe_dump(runtime_env))
    return str(path)


@pytest.fixture(scope="module")
def trained(cluster, inputs):
    logs = cluster.run("train-straight", "jobs/train.py", *train_args(inputs, "straight"))
    return logs, f"{inputs['runs']}/straight"


def test_training_puts_its_workers_on_two_nodes_and_everything_it_writes_on_s3(cluster, trained):
    logs, run = trained
    assert "epoch 2/2" in logs and f"model: {run}/model.pt" in logs
    workers = cluster.actor_nodes("train-straight", "RayTrainWorker")
    assert len(workers) == 2 and len(set(workers)) == 2, workers  # one per node, no two on one
    files, _ = storage.list_tree(run)
    assert epochs_recorded(run) == [1, 2]
    checkpoints = {
        name.split("/")[0] for name in files if name.startswith("checkpoint_") and name.endswith("/train_state.pt")
    }
    assert len(checkpoints) == 2 and "model.pt" in files and "config.json" in files


def test_a_worker_node_killed_mid_epoch_resumes_from_its_checkpoint_to_the_same_weights(
    cluster, inputs, trained, tmp_path
):
    # Rank 0 pauses halfway through epoch 2 (HANDVAE_FAULT_INJECTION); a node of a training worker
    # is then killed as a machine is lost, and a new node takes its place.
    run = f"{inputs['runs']}/node-lost"
    cluster.submit(
        "train-node-lost",
        "jobs/train.py",
        *train_args(inputs, "node-lost"),
        runtime_env=runtime_env_with(tmp_path, {FAULT_INJECTION_ENV: "pause:2"}),
    )
    wait_until(lambda: storage.exists(f"{run}/{FAULT_MARKER}"), "rank 0 halfway through epoch 2")
    workers = cluster.actor_nodes("train-node-lost", "RayTrainWorker", alive_only=True)
    lost = next(name for name in workers if name != "head")
    cluster.kill_node(lost)
    cluster.start_node(lost)
    assert cluster.wait("train-node-lost") == "SUCCEEDED", cluster.logs("train-node-lost")
    logs = cluster.logs("train-node-lost")
    # Epoch 1 ran once: the restarted workers began at epoch 2, from epoch 1's checkpoint.
    assert logs.count("epoch 1/2") == 1 and logs.count("loaded ") == 2 and "epoch 2/2" in logs, logs
    assert len(cluster.actor_nodes("train-node-lost", "RayTrainWorker")) == 4  # two workers, twice
    assert epochs_recorded(run) == [1, 2]
    assert_same_weights(f"{run}/model.pt", f"{trained[1]}/model.pt")


def generate_args(inputs: dict, out: str) -> list[str]:
    """Own-class drawings of 10 letters, 256 of each."""
    model = f"{inputs['runs']}/straight/model.pt"
    return ["--model", model, "--letters-csv", inputs["csv"], *"--chars ABCDEFGHIJ --num-styles 256 --num-workers 2".split(),
            "--out", out]  # fmt: skip


def data_files(out: str) -> dict[str, bytes]:
    """The committed data set's files by name within its run prefix, and their bytes."""
    manifest = json.loads(storage.read_bytes(f"{out}/manifest.json"))
    return {name.rsplit("/", 1)[1]: storage.read_bytes(f"{out}/{name}") for name in manifest["files"]}


@pytest.fixture(scope="module")
def generated(cluster, inputs, trained, tmp_path_factory):
    """A generation job stopped with `ray job stop` mid-run, then the same command again into the
    same --out, undisturbed; that one's actor pool waits for both of its actors before drawing
    (Ray Data starts with the first ready one: with 2,560 characters the job could end before the
    second is placed)."""
    out = f"{inputs['bucket']}/multinode/generated"
    cluster.submit("generate-stopped", "jobs/generate.py", *generate_args(inputs, out))
    # Stopped once it has claimed --out (its run's prefix is marked there; Ray and the actors start next).
    wait_until(
        lambda: any(name.endswith(f"/{RUN_MARKER}") for name in storage.list_tree(out)[0]), "the run's prefix in --out"
    )
    stop = subprocess.run(
        [RAY_CLI, "job", "stop", "generate-stopped"],
        cwd=REPO,
        env=cluster.client_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert cluster.wait("generate-stopped") == "STOPPED"
    after_stop = storage.list_tree(out)[0]
    both_actors = runtime_env_with(
        tmp_path_factory.mktemp("generate"), {"RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "300"}
    )
    logs = cluster.run("generate", "jobs/generate.py", *generate_args(inputs, out), runtime_env=both_actors)
    return {"out": out, "after_stop": after_stop, "stopped_logs": cluster.logs("generate-stopped"), "logs": logs}


def test_a_generation_job_stopped_mid_run_leaves_nothing_visible_and_the_next_run_succeeds(generated):
    after_stop, out = generated["after_stop"], generated["out"]
    assert "generated 2,560/2,560" not in generated["stopped_logs"]
    # Nothing a reader follows (card, manifest, _SUCCESS); at most the stopped run's own prefix.
    assert all(name.startswith("data/") or name == ".handvae.lock" for name in after_stop), after_stop
    manifest = json.loads(storage.read_bytes(f"{out}/manifest.json"))
    assert manifest["rows"] == 2560 and manifest["files"] and storage.exists(f"{out}/_SUCCESS")
    # Under data/ only the committed run's prefix is left.
    assert {name.split("/")[0] for name in storage.list_tree(f"{out}/data")[0]} == {
        manifest["data_dir"].removeprefix("data/")
    }


def test_generation_runs_its_model_actors_on_two_nodes_reading_the_model_from_s3(cluster, generated):
    actors = cluster.actor_nodes("generate", f"MapBatches({Drawer.__name__})")
    assert len(actors) == 2 and len(set(actors)) == 2, actors


def test_a_model_actor_node_killed_during_generation_leaves_the_same_data_set(cluster, inputs, generated):
    out = f"{inputs['bucket']}/multinode/generated-node-lost"
    cluster.submit("generate-node-lost", "jobs/generate.py", *generate_args(inputs, out))
    # As soon as a model actor's process is up on a worker node: it is being built, or drawing.
    lost = wait_until(
        lambda: [
            name for name in cluster.nodes_running(f"ray::MapWorker(MapBatches({Drawer.__name__}))") if name != "head"
        ],
        "a model actor",
    )[0]
    cluster.kill_node(lost)
    assert not storage.exists(f"{out}/_SUCCESS")  # lost mid-run
    cluster.start_node(lost)
    status = cluster.wait("generate-node-lost")
    if status != "SUCCEEDED":  # then it failed clearly, leaving nothing visible, and a re-run completes it
        logs = cluster.logs("generate-node-lost")
        assert status == "FAILED" and "error" in logs.lower(), logs
        assert not storage.exists(f"{out}/manifest.json")
        cluster.run("generate-node-lost-again", "jobs/generate.py", *generate_args(inputs, out))
    assert data_files(out) == data_files(generated["out"])


def test_evaluation_reads_the_model_from_s3_and_writes_its_report_there(cluster, inputs, trained):
    out = f"{inputs['bucket']}/multinode/report"
    cluster.run(
        "evaluate",
        "jobs/evaluate.py",
        "--model",
        f"{trained[1]}/model.pt",
        "--letters-csv",
        inputs["csv"],
        "--num-workers",
        "2",
        "--out",
        out,
    )
    report = json.loads(storage.read_bytes(f"{out}/metrics.json"))
    last = json.loads(storage.read_bytes(f"{trained[1]}/metrics.jsonl").decode().splitlines()[-1])
    assert report["images"] == last["test_images"] and report["accuracy"] == pytest.approx(last["test_accuracy"])
    assert storage.exists(f"{out}/_SUCCESS") and storage.exists(f"{out}/report.md")


def test_local_paths_that_other_nodes_cannot_see_are_refused_before_anything_starts(cluster, inputs, tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "generated"
    cluster.submit(
        "local-storage",
        "jobs/train.py",
        *train_args(inputs, "local")[:-2],
        "--storage-path",
        str(runs),
    )
    cluster.submit("local-out", "jobs/generate.py", *generate_args(inputs, str(out)))
    for submission_id, flag, path in (("local-storage", "--storage-path", runs), ("local-out", "--out", out)):
        assert cluster.wait(submission_id) == "FAILED"
        logs = cluster.logs(submission_id)
        assert (
            f"error: {flag} {path}: a local path is on this node only, and this Ray cluster has 3 nodes" in logs
            and "Traceback" not in logs
        ), logs
        assert not path.exists()
