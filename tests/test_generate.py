"""The generation job on Ray Data: row counts and schema, determinism, text lines, style images,
whole outputs after a re-run or a killed run, and clear errors."""

import io

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest
import torch
from conftest import make_letters, make_mnist_root, write_kaggle_csv
from PIL import Image
from test_images import handwritten_l
from typer.testing import CliRunner

from handvae.checkpoint import save_model
from handvae.cli import app
from handvae.data.datasets import DataSources
from handvae.errors import DataError
from handvae.generate import GenerateOptions, run_generation
from handvae.labels import CHARSET
from handvae.model import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("ray_local")
COLUMNS = ["style_id", "source", "row", "sample", "char", "label", "pixels", "png"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    images, labels = make_letters(60)
    make_mnist_root(root / "mnist", train=4, test=9)
    return DataSources(letters_csv=str(write_kaggle_csv(root / "az.csv", images, labels)), mnist_dir=str(root / "mnist"))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, VAE(VAEConfig(num_filters=4, num_latent=3)))
    return str(path)


@pytest.fixture(scope="module")
def alphabets(sources, model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "alphabets"
    manifest = run_generation(model_path, sources, str(out), GenerateOptions(num_styles=3, samples_per_style=2, num_workers=1))
    return out, manifest


def read(out):
    return pads.dataset(str(out), format="parquet", exclude_invalid_files=True).to_table().to_pandas()


def test_every_style_gets_the_full_alphabet_in_one_schema(alphabets):
    out, manifest = alphabets
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "_manifest.json", "part-00000.parquet", "sheet.png"]
    table = pads.dataset(str(out), format="parquet", exclude_invalid_files=True).to_table()
    assert table.column_names == COLUMNS and table.num_rows == manifest["rows"] == 3 * 2 * 36
    frame = table.to_pandas()
    assert frame.groupby(["style_id", "sample"]).size().tolist() == [36] * 6
    assert (frame["label"] == frame["char"].map(CHARSET.index)).all()
    assert set(frame["sample"]) == {0, 1} and frame["source"].str.endswith(("az.csv", "t10k-images-idx3-ubyte.gz")).all()
    for pixels, png in zip(frame["pixels"][:5], frame["png"][:5]):
        image = np.frombuffer(pixels, np.uint8).reshape(28, 28)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), image)  # both columns hold the same image
    assert len(pd.read_parquet(out / "part-00000.parquet")) == 216  # pandas reads it as is
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.width > 500 and sheet.height > 100


def test_same_seed_same_output_whatever_the_actors(sources, model_path, alphabets, tmp_path):
    out, _ = alphabets
    again = run_generation(model_path, sources, str(tmp_path / "again"), GenerateOptions(num_styles=3, samples_per_style=2, num_workers=2))
    assert read(out).equals(read(tmp_path / "again")) and again["rows"] == 216
    other = run_generation(model_path, sources, str(tmp_path / "other"), GenerateOptions(num_styles=3, samples_per_style=2, seed=1))
    assert not read(out)["pixels"].equals(read(tmp_path / "other")["pixels"])


def test_randomness_zero_draws_the_mean_style(sources, model_path, tmp_path):
    run_generation(model_path, sources, str(tmp_path / "mean"), GenerateOptions(num_styles=2, chars="A7", samples_per_style=3, randomness=0.0))
    frame = read(tmp_path / "mean")
    for _, group in frame.groupby(["style_id", "char"]):
        assert group["pixels"].nunique() == 1  # every draw is the posterior mean
    assert frame["pixels"].nunique() == 4


def test_text_lines_and_style_images(model_path, tmp_path):
    paths = [str(handwritten_l(tmp_path / f"mine{i}.png", size=(90 + 10 * i, 140))) for i in range(2)]
    manifest = run_generation(model_path, DataSources(), str(tmp_path / "text"), GenerateOptions(text="HI 2", style_images=tuple(paths)))
    frame = read(tmp_path / "text")
    assert manifest["styles"] == 2 and len(frame) == 2 and set(frame["char"]) == {"HI 2"} and set(frame["label"]) == {-1}
    assert sorted(frame["source"]) == sorted(paths) and set(frame["row"]) == {0}
    line = np.frombuffer(frame["pixels"][0], np.uint8).reshape(28, 4 * 28)
    assert line[:, 56:84].max() == 0 and line[:, :56].max() > 0  # the space stays blank
    assert np.asarray(Image.open(io.BytesIO(frame["png"][0]))).shape == (28, 112)


def test_a_rerun_after_a_killed_run_leaves_exactly_one_whole_output(sources, model_path, alphabets, tmp_path):
    out = tmp_path / "gen"
    options = GenerateOptions(num_styles=2, chars="AB")
    run_generation(model_path, sources, str(out), options)
    killed = tmp_path / "gen.tmp-deadbeef"  # what a run killed midway leaves behind
    killed.mkdir()
    (killed / "part-00000.parquet").write_bytes(b"half a file")
    run_generation(model_path, sources, str(out), options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]
    assert len(read(out)) == 2 * 2  # replaced, not appended


def test_bad_requests_are_refused_with_what_was_wrong(sources, model_path, tmp_path):
    with pytest.raises(DataError, match=r"--text: 'a' at position 2 is not supported; the model draws 0-9 and A-Z \(the model draws upper-case"):
        GenerateOptions(text="Ha")
    with pytest.raises(DataError, match=r"--chars: '\?' at position 3"):
        GenerateOptions(chars="AB?")
    (tmp_path / "scan.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="scan.png: not a readable image"):
        run_generation(model_path, DataSources(), str(tmp_path / "out"), GenerateOptions(style_images=(str(tmp_path / "scan.png"),)))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep")
    with pytest.raises(DataError, match="not an earlier generation output"):
        run_generation(model_path, sources, str(tmp_path / "mine"), GenerateOptions(num_styles=1))
    assert not (tmp_path / "out").exists()


def test_cli_generates_and_exits_2_on_an_unsupported_character(sources, model_path, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["generate", "--model", model_path, "--out", str(tmp_path / "g"), "--mnist-dir", sources.mnist_dir, "--num-styles", "2", "--chars", "XY"])
    assert ok.exit_code == 0, ok.output
    assert "wrote 4 images in 2 styles" in ok.output
    bad = runner.invoke(app, ["generate", "--model", model_path, "--out", str(tmp_path / "h"), "--text", "hello"])
    assert bad.exit_code == 2 and "'h' at position 1 is not supported" in bad.output
