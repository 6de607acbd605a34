"""`handvae data` end to end: the summary on fixtures, and exit status 2 with the error on stderr."""

import pytest
from typer.testing import CliRunner

from handvae.cli import app

from conftest import make_letters, make_mnist_root, write_kaggle_csv

pytestmark = pytest.mark.usefixtures("ray_local")


def test_data_prints_rows_per_source_split_and_class(tmp_path):
    images, labels = make_letters(52)
    csv = write_kaggle_csv(tmp_path / "az.csv", images, labels)
    make_mnist_root(tmp_path / "mnist", train=20, test=10)
    result = CliRunner().invoke(app, ["data", "--letters-csv", str(csv), "--mnist-dir", str(tmp_path / "mnist")])
    assert result.exit_code == 0, result.output
    assert "82  total" in result.stdout
    rows = {
        line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()[:2] in {"0 ", "Z "}
    }
    assert sum(map(int, rows["0"])) == 3 and sum(map(int, rows["Z"])) == 2


def test_bad_input_exits_2_with_the_error_on_stderr(tmp_path):
    make_mnist_root(tmp_path / "mnist", gz=False)
    (tmp_path / "mnist/MNIST/raw/train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x03" + (30).to_bytes(4, "big"))
    result = CliRunner().invoke(app, ["data", "--mnist-dir", str(tmp_path / "mnist")])
    assert result.exit_code == 2
    assert "error: " in result.stderr and "train-labels-idx1-ubyte: IDX magic number" in result.stderr
    assert "Traceback" not in result.stderr
