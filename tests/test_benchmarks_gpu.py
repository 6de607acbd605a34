"""benchmarks/gpu.py runs end to end on the CPU with --dry-run (its figures need a GPU)."""

import importlib.util
import re
from pathlib import Path

import pytest

from conftest import make_letters, write_kaggle_csv

pytestmark = pytest.mark.usefixtures("ray_local")


def test_the_gpu_benchmark_runs_dry_on_the_cpu_and_prints_its_figures_side_by_side(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "gpu_benchmark", Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    )
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    csv = write_kaggle_csv(tmp_path / "az.csv", *make_letters(208, learnable=True))
    benchmark.main(letters_csv=str(csv), mnist_dir=None, epochs=None, num_styles=8, dry_run=True)
    printed = capsys.readouterr().out
    rows = {
        m[1]: m.groups()[1:]
        for m in re.finditer(r"^(train fp32|generate)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)x", printed, re.MULTILINE)
    }
    assert set(rows) == {"train fp32", "generate"}, printed  # no bf16 on a CPU
    for job, plain, ratio in rows.values():
        job, plain = float(job.replace(",", "")), float(plain.replace(",", ""))
        # The rates are printed as whole numbers, the ratio from the unrounded ones.
        assert (
            job > 0
            and plain > 0
            and (job - 0.5) / (plain + 0.5) - 0.01 <= float(ratio) <= (job + 0.5) / (plain - 0.5) + 0.01
        )
    assert "GPU busy while training: fp32 n/a (no NVML)" in printed
    assert re.search(r"test accuracy after the last epoch: plain fp32 [\d.]+%, handvae train fp32 [\d.]+%", printed), (
        printed
    )
