"""The package's layout contracts: worker-side modules stay light (what every Ray actor and training
worker imports), and no module outgrows one concern."""

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "handvae"
# Imported by Ray's workers: the training loop, the model actors, the streaming feed.
WORKER_MODULES = (
    "handvae.train.worker",
    "handvae.evaluate.worker",
    "handvae.generate.worker",
    "handvae.data.streaming",
    "handvae.data.folders",
    "handvae.score.cas",
)
DRIVER_ONLY = ("matplotlib", "torchmetrics")
MAX_MODULE_LINES = 350


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_worker_modules_load_neither_matplotlib_nor_torchmetrics(module):
    code = f"import sys, {module}; print(sorted(m for m in {DRIVER_ONLY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"{module} loads {loaded}"


def test_driver_modules_do_load_them():
    """The check above can fail: the evaluation driver does import both."""
    code = f"import sys, handvae.evaluate.driver; print(sorted(m for m in {DRIVER_ONLY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == str(sorted(DRIVER_ONLY))


def test_training_does_not_import_evaluation():
    code = "import sys, handvae.train.driver; print(any(m.startswith('handvae.evaluate') for m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_no_module_is_over_its_size():
    sizes = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert len(sizes) > 30
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}
