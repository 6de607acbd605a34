"""Fixtures in the real formats, made by the tests: the Kaggle CSV (with and without pandas' header)
and MNIST IDX files (gzipped and raw) in torchvision's layout. Nothing here reads ../shared."""

import gzip
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

# Ray Train's controller polls its workers every 2 s by default: each run waits up to that long to
# see its workers start, finish or fail. Measured on a 3-epoch test run: 25.9 s at the default, 19.8 s
# at 0.2 s. Set at import, before any Ray starts (embedded, a command's subprocess, the cluster head).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
# The commands' output, held to one `error:` line by the tests, is the same on any disk: Ray's raylet
# reports a disk over 95% full (its local_fs_capacity_threshold) every 10 s, which handvae turns into a
# warning (tests/test_runtime.py), and CI ran at 96%. 1 turns Ray's check off; nothing here spills.
os.environ.setdefault("RAY_local_fs_capacity_threshold", "1")


def make_letters(count: int, seed: int = 0, learnable: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0-25 and an image per row: random noise (rows are tellable apart), or, with
    `learnable`, a class-specific stroke plus a little noise, which a model can learn to tell apart."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 26).astype(np.uint8)
    if not learnable:
        return rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8), labels
    images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = 2 + label % 13 * 2, 2 + label // 13 * 12
        images[i, row : row + 3, col : col + 12] = 255
    return images, labels


def write_kaggle_csv(path: Path, images: np.ndarray, labels: np.ndarray, header: bool = False) -> Path:
    """The Kaggle format: label then 784 pixels per line; `header` adds pandas' re-saved header line."""
    lines = []
    if header:
        lines.append(",".join(["0"] + [f"0.{i}" for i in range(1, 785)]))
    for image, label in zip(images, labels):
        lines.append(",".join(map(str, [int(label), *image.reshape(-1).tolist()])))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_idx(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = (
        (0x800 | array.ndim).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.tobytes()
    )
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)


def make_mnist_root(root: Path, train: int = 30, test: int = 12, gz: bool = True, seed: int = 1) -> dict:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    arrays = {}
    for split, prefix, count in (("train", "train", train), ("test", "t10k", test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        arrays[split] = (images, labels)
    return arrays


def save_tiny_model(path: Path) -> str:
    """A freshly initialised (seeded) small model file with a detail code, as the default's:
    what generation and output tests need."""
    import torch

    from handvae.formats.model_file import save_model
    from handvae.model.vae import VAE, VAEConfig

    torch.manual_seed(0)
    save_model(path, VAE(VAEConfig(num_filters=4, num_latent=3, detail_latent=2)))
    return str(path)


def assert_same_weights(model_path_a: str, model_path_b: str) -> None:
    """The two model files hold bit-identical weights."""
    import torch

    from handvae.formats.model_file import load_model_and_metadata

    a, b = (load_model_and_metadata(path)[0].state_dict() for path in (model_path_a, model_path_b))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def free_ports(count: int) -> list[int]:
    """`count` ports free on 127.0.0.1 now (bound together, so distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def pids_mentioning(text: str) -> list[int]:
    """The processes whose command line holds `text` (a Ray node's own temporary folder finds all of its)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # the process ended meanwhile
            pass
    return pids


def ray_node_env(home: Path, token: str) -> dict:
    """The environment of a `ray start` node as cluster.yaml starts it (token authentication) and of its
    clients: HOME of its own (the machine's ~/.ray/auth_token is neither read nor written), and `python`
    in a job's entry point is this environment's, as it is the image's on a cluster."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    return env | {
        "HOME": str(home),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "PATH": os.path.dirname(sys.executable) + os.pathsep + env["PATH"],
    }


def ray_node_flags(temp_dir: str) -> list[str]:
    """`ray start` flags every test node takes: on loopback, in the foreground, in its own temporary
    folder, and on free ports where Ray's defaults are fixed (10001, 52365, ...), which another Ray on
    this machine may hold."""
    agent_http, agent_grpc, runtime_env_agent, metrics = free_ports(4)
    return [
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env_agent}",
        f"--metrics-export-port={metrics}",
        "--min-worker-port=0",
        "--max-worker-port=0",
        "--disable-usage-stats",
    ]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-protocol server (moto's server mode, on 127.0.0.1 at a free port), its address and
    test credentials in the environment for the whole session. pyarrow finds it through
    AWS_ENDPOINT_URL; it starts before the embedded Ray (`ray_local` asks for it) because Ray's
    workers copy the environment when Ray starts, so that they reach it as this process does."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            patch.setenv(key, value)
        yield
    server.stop()


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One embedded Ray for the whole test session (starting Ray takes seconds)."""
    import ray

    from handvae.runtime import init_ray

    init_ray(extra_cpus=2)  # room for 2 training workers beside the data tasks
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_bucket(s3_server):
    """A bucket on the session's S3 server."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="handvae-test")
    return "s3://handvae-test"
