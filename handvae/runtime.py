"""Connecting to Ray (the cluster in RAY_ADDRESS when set, otherwise an embedded local Ray), and every
Ray internal that handvae depends on, each with its reason, so that a Ray upgrade is checked here:

- environment variables read by Ray's processes (`_QUIET_ENV`) and Ray's private logger names
  (`init_ray`, `quiet_worker`): the console keeps to what a person needs, the jobs' own lines
  (one per epoch from rank 0) instead of progress bars, per-worker duplicates and INFO chatter;
- the driver's printer of forwarded log lines, for the raylet's disk-full line (`say_disk_full_once`);
- Ray Train's SIGINT handler, which fit() leaves behind (`keeping_sigint_handler`);
- Ray Train's checkpoint snapshot file in a run folder (`set_aside_stale_train_snapshot`).

Resuming reads the run folder's checkpoints itself (`handvae.formats.checkpoints.RunCheckpoints`)
rather than `ray.train.get_checkpoint()`: that offers the latest checkpoint only, and a damaged
latest one fails the run, where skipping it to the newest readable one (with a warning naming it)
resumes; the tests of damaged checkpoints hold that contract.
"""

import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable

import ray

from handvae import storage
from handvae.errors import ConfigError, user_error

# Read by Ray's processes at start-up: set in the driver before ray.init, and passed to the workers
# in the job's runtime env (on a cluster they do not inherit the driver's environment).
_QUIET_ENV = {
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # otherwise every worker print() shows twice
    "RAY_DATA_LOG_LEVEL": "ERROR",  # "Starting execution of Dataset ..." and execution plans
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",  # an error line per worker on machines that are not preemptible
}


def init_ray(extra_cpus: int = 0) -> None:
    """Start or join Ray once per process. An embedded Ray gets the machine's cores plus
    `extra_cpus` logical CPUs: training workers hold one CPU each, and Ray Data's tasks need
    CPUs beside them, or the data waits forever for a free CPU.

    Under `ray job submit`, Ray sets RAY_ADDRESS and merges this runtime env with the job's
    (working_dir, excludes); the job's own may not set the same environment variables."""
    if ray.is_initialized():
        return
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if not (sys.stdout.isatty() and sys.stderr.isatty()):  # Ray colours worker lines' prefixes even into files
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # read by this process when it prints them
    runtime_env = {
        "env_vars": {key: os.environ[key] for key in _QUIET_ENV},
        "worker_process_setup_hook": "handvae.runtime.quiet_worker",
    }
    # Ray announces its default for a new local Ray, token authentication, with a warning line in
    # every command's output; its warnings when authentication is off still show.
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_drop_token_auth_enabled_note)
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env)
    else:
        ray.init(
            num_cpus=(os.cpu_count() or 1) + extra_cpus,
            include_dashboard=False,  # `ray job submit` brings its own cluster and dashboard
            logging_level=logging.WARNING,
            runtime_env=runtime_env,
        )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # A DataError raised in a map_batches function reaches the caller as itself (with its file and
    # row), not as a bare "UDF failed" whose cause is lost on the way back from the worker.
    context.raise_original_map_exception = True
    logger = logging.getLogger("ray.data")
    logger.setLevel(logging.WARNING)
    logger.addFilter(_drop_user_error_traces)
    # Its warning that the progress bars are off, which they are on purpose, once per command.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    say_disk_full_once()


# The raylet's line while the disk under Ray's temporary folder is fuller than its
# local_fs_capacity_threshold (95%): "<path> is over 95% full, available space: 10.4276 GB; capacity:
# 251.972 GB. Object creation will fail if spilling is required." (file_system_monitor.cc)
_DISK_FULL = re.compile(r"(\S+) is over ([\d.]+)% full, available space: ([\d.]+) GB; capacity: ([\d.]+) GB")


def say_disk_full_once() -> None:
    """The raylet logs an ERROR line every 10 s for as long as its disk is over the mark, and Ray
    prints each in every driver's console: on a CI machine at 96% (10.4 GB free of 252 GB) a command
    that never spills showed a dozen of them around its one `error:` line. This wraps the driver's
    printer of forwarded lines (Ray's dispatcher handler "ray_print_logs", which ray.init adds and
    ray.shutdown removes by that name) so that the notice is said once per node, as a warning that
    says what it means and what to do; every other line passes as it was."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    for name, handler in list(dispatcher.handlers):
        if name == "ray_print_logs" and not isinstance(handler, _DiskFullOnce):
            dispatcher.remove_handler(name)
            dispatcher.add_handler(name, _DiskFullOnce(handler))


class _DiskFullOnce:
    """A printer of Ray's forwarded log batches ({"ip", "pid", "lines", ...}) that turns the raylet's
    disk-full lines into one warning per node and hands the rest to Ray's own printer."""

    def __init__(self, print_batch: Callable[[dict], None]):
        self.print_batch = print_batch
        self.warned_nodes: set[str] = set()

    def __call__(self, batch: dict) -> None:
        if batch.get("pid") == "raylet":
            matches = [(line, _DISK_FULL.search(line)) for line in batch["lines"]]
            notice = next((match for _, match in matches if match), None)
            if notice:
                self._warn(batch.get("ip", ""), notice)
                batch = {**batch, "lines": [line for line, match in matches if not match]}
                if not batch["lines"]:
                    return
        self.print_batch(batch)

    def _warn(self, node: str, notice: re.Match) -> None:
        if node in self.warned_nodes:
            return
        self.warned_nodes.add(node)
        path, mark, free_gb, capacity_gb = notice.groups()
        print(
            f"warning: Ray's temporary folder {path} (node {node}) is on a disk over {float(mark):g}% full "
            f"({float(free_gb):.1f} GB free of {float(capacity_gb):.0f} GB): past that mark Ray spills no "
            "objects to disk, so a job whose data outgrow the object store in memory fails. Free some space, or "
            "give Ray a temporary folder on a larger disk (RAY_TMPDIR for an embedded Ray, `ray start --temp-dir` "
            "on a cluster)",
            file=sys.stderr,
            flush=True,
        )


def wait_for_free_cpus(timeout_s: float = 10.0) -> None:
    """Wait (up to `timeout_s`) until Ray has a free CPU again. A Ray Data execution that ends right
    after another one finds every CPU still held: the workers of the first give their CPUs back a
    second or two after its last batch (measured on 2 cores: 0 of 3 free right after `handvae generate
    --pairing blend` read the split, 3 of 3 two seconds later), and Ray Data then warns that the
    job "will hang", which it does not. On a cluster busy with other jobs this gives up and goes on."""
    deadline = time.monotonic() + timeout_s
    while not ray.available_resources().get("CPU") and time.monotonic() < deadline:
        time.sleep(0.1)


def check_workers_fit(num_workers: int, use_gpu: bool) -> None:
    """Refuse, before Ray starts, more workers (--num-workers: training ranks or model actors) than
    this machine holds: one CPU core each (one GPU with use_gpu). Ray would start them all on an
    embedded Ray's oversubscribed logical CPUs, each a process with torch, until its memory monitor
    kills them. A cluster (RAY_ADDRESS) is not checked here: its autoscaler may add the nodes."""
    if os.environ.get("RAY_ADDRESS"):
        return
    if use_gpu:
        import torch

        available, unit = torch.cuda.device_count(), "GPU"
    else:
        available, unit = os.cpu_count() or 1, "CPU core"
    if num_workers > available:
        raise ConfigError(
            f"--num-workers {num_workers}: this machine has {available} {unit}(s), so at most {available} workers "
            f"(one {unit} each) on an embedded Ray; lower --num-workers, or set RAY_ADDRESS to a Ray cluster"
        )


def check_paths_reach_workers(paths: dict[str, str | None], num_workers: int, use_gpu: bool) -> None:
    """Refuse local paths that the workers (training ranks, model actors, Ray Data's tasks) read or
    write, `paths` by flag, when they may run on another node than this process: a Ray cluster of
    several nodes, or one whose only node cannot hold the workers (the autoscaler adds nodes for
    them). A local path names a file of this node only; a URI (s3://...) is the same on all.
    An embedded Ray is one node that holds the workers (check_workers_fit); on a cluster
    (RAY_ADDRESS) this joins it, to ask for its nodes."""
    local = {flag: path for flag, path in paths.items() if path and not storage.is_uri(path)}
    if not local or not os.environ.get("RAY_ADDRESS"):
        return
    init_ray()
    nodes = [node for node in ray.nodes() if node["Alive"]]
    unit = "GPU" if use_gpu else "CPU"
    if len(nodes) > 1:
        why = f"this Ray cluster has {len(nodes)} nodes, and the workers run on any of them"
    elif nodes and nodes[0]["Resources"].get(unit, 0) < num_workers:
        held = nodes[0]["Resources"].get(unit, 0)
        why = f"this Ray cluster's one node has {held:g} {unit}(s) for {num_workers} workers, which will run on nodes added for them"
    else:
        return
    flag, path = next(iter(local.items()))
    raise ConfigError(
        f"{flag} {path}: a local path is on this node only, and {why}; give a URI that every node reaches (s3://BUCKET/...)"
    )


@contextlib.contextmanager
def keeping_sigint_handler():
    """Ray Train's fit() installs a SIGINT handler of its own and leaves it behind; after the run it
    swallows Ctrl-C (it asks the finished controller to abort, which returns). Restore ours."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread has handlers
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


_ACTOR_RESTART_NOTICE = b"has constructor arguments in the object store and max_restarts > 0"


@contextlib.contextmanager
def hiding_actor_restart_notice():
    """Keeps one line of Ray's out of the terminal while Ray Data starts an actor pool: its core
    worker's ERROR "Actor with class name: 'MapWorker(...)' ... has constructor arguments in the
    object store and max_restarts > 0" (ray-project/ray#53727), which reads as a failure at the end
    of a run that succeeded.

    It cannot be avoided by what we pass: Ray Data 2.60 creates every map actor with its own
    DataContext and map transformer as object refs (ActorPoolMapOperator._start_actor: ctx=...,
    map_transformer=...), and the core worker logs that line, once per process, for any actor
    created with a by-reference argument and max_restarts != 0. Only map_batches(max_restarts=0)
    silences it, which would give up the actor restarts that Ray Data turns on (-1) by default.
    The C++ logger writes to file descriptor 2, so for the duration the descriptor is a pipe that a
    thread copies to the real stderr, line by line, less that line. Ray logs it once per process:
    the first actor pool is all that needs covering."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy():
        pending = b""
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if _ACTOR_RESTART_NOTICE not in line)
            if kept:
                os.write(saved, kept)
        if pending and _ACTOR_RESTART_NOTICE not in pending:
            os.write(saved, pending)
        os.close(read_end)

    thread = threading.Thread(target=copy, name="handvae-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer closes: the thread copies what is left and ends
        thread.join(timeout=10)
        os.close(saved)


def quiet_worker() -> None:
    """Runs in every worker process of the job, embedded or on a cluster."""
    # Train's placement-group cleaner asks the state API for the controller, which needs an
    # address when the dashboard is off, or when several Ray instances share one host.
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.CRITICAL)
    # Ray's own DatasetManager sets an option it deprecated itself; nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*exclude_resources.*")


def _drop_token_auth_enabled_note(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster.")


def _drop_user_error_traces(record: logging.LogRecord) -> bool:
    """Bad input is reported once, plainly, by the command; Ray's copies of its traceback are noise."""
    return not (record.exc_info and user_error(record.exc_info[1]) is not None)


RAY_TRAIN_SNAPSHOT = "checkpoint_manager_snapshot.json"
"""Ray Train's list of a run's checkpoints in the run folder, which it reloads on resume."""


def set_aside_stale_train_snapshot(run_dir: str, checkpoint_folders: list[str], warn: Callable[[str], None]) -> None:
    """Ray refuses to start a run whose snapshot lists a checkpoint folder that is gone (or is not
    JSON). Such a snapshot is renamed to RAY_TRAIN_SNAPSHOT.stale, so that Ray starts a new list; the
    folders themselves (`checkpoint_folders`) are what handvae resumes from, so nothing is lost."""
    path = storage.join(run_dir, RAY_TRAIN_SNAPSHOT)
    data = storage.read_bytes(path)
    if data is None:
        return
    try:
        listed = [result["checkpoint_dir_name"] for result in json.loads(data)["checkpoint_results"]]
        present = {os.path.basename(folder.rstrip("/")) for folder in checkpoint_folders}
        missing = [name for name in listed if name not in present]
    except (ValueError, KeyError, TypeError) as exc:
        missing, reason = None, f"not readable ({exc})"
    else:
        reason = f"lists checkpoint folder(s) that are gone: {', '.join(missing)}"
    if missing == []:
        return
    fs, fs_path = storage.resolve_input(path)
    fs.move(fs_path, fs_path + ".stale")
    warn(f"{path} {reason}; set aside as {RAY_TRAIN_SNAPSHOT}.stale so that Ray accepts the run folder")
