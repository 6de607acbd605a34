"""The evaluation job on Ray Data: every image counts once whatever the actors, the report folder
holds every file, and bad models, empty splits and occupied folders get clear errors."""

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from handvae.cli import app
from handvae.data.sources import DataSources
from handvae.errors import DataError, ModelFileError, OutputError
from handvae.evaluate.driver import EvalOptions, run_evaluation
from handvae.evaluate.reports import GENERATION_PLOT, REPORT_FILES
from handvae.formats.model_file import save_judge, save_model
from handvae.model.judge import Judge
from handvae.model.vae import VAE, VAEConfig

from conftest import make_letters, make_mnist_root, write_kaggle_csv

pytestmark = pytest.mark.usefixtures("ray_local")
MNIST_TEST = 30


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    images, labels = make_letters(130, learnable=True)
    csv = write_kaggle_csv(root / "az.csv", images, labels)
    make_mnist_root(root / "mnist", train=10, test=MNIST_TEST)
    return DataSources(letters_csv=str(csv), mnist_dir=str(root / "mnist"), csv_chunk_bytes=20_000)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, VAE(VAEConfig(num_filters=4, num_latent=3)), metadata={"run_name": "tiny", "epoch": 1})
    return str(path)


@pytest.fixture(scope="module")
def judge_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("judge") / "judge.pt"
    save_judge(str(path), Judge(), {"note": "untrained"})
    return str(path)


@pytest.fixture(scope="module")
def one_actor(sources, model_path, judge_path, tmp_path_factory):
    """A report with a judge (2 styles per class), from one model actor and batches of 7."""
    out = tmp_path_factory.mktemp("reports") / "one"
    return out, run_evaluation(
        model_path, sources, str(out), EvalOptions(num_workers=1, batch_size=7, judge=judge_path, styles_per_class=2)
    )


def test_every_image_counts_once_whatever_the_actors_and_batches(sources, model_path, judge_path, one_actor, tmp_path):
    _, one = one_actor
    two = run_evaluation(
        model_path,
        sources,
        str(tmp_path / "two"),
        EvalOptions(num_workers=2, batch_size=5, judge=judge_path, styles_per_class=2),
    )
    assert one["images"] == two["images"]
    assert one["by_source"][sources.mnist_dir + "/MNIST/raw/t10k-images-idx3-ubyte.gz"]["images"] == MNIST_TEST
    letters = one["by_source"][sources.letters_csv]["images"]
    assert 0 < letters < 130 and one["images"] == MNIST_TEST + letters  # the letters' test split only
    assert sum(map(sum, one["confusion_matrix"])) == one["images"] == sum(one["per_class_images"].values())
    # Each image's posterior sample has its own seed: the figures do not depend on the batching.
    for key in ("accuracy", "recon_accuracy", "per_class_accuracy", "confusion_matrix", "loss"):
        assert one[key] == (pytest.approx(two[key], rel=1e-6) if key == "loss" else two[key]), key
    # The generated characters' styles are a seeded sample of each class, the same whatever the batching.
    assert one["generation"] == two["generation"]


def test_the_report_folder_holds_every_file(one_actor, model_path):
    out, report = one_actor
    assert sorted(p.name for p in out.iterdir()) == sorted(
        REPORT_FILES + (GENERATION_PLOT, "manifest.json", "_SUCCESS")
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "recon_accuracy", "per_class_accuracy", "model", "data", "split"} <= set(saved)
    assert (
        saved["model"] == model_path
        and saved["split"] == "test"
        and saved["model_metadata"] == {"run_name": "tiny", "epoch": 1}
    )
    assert set(saved["per_class_accuracy"]) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for name in REPORT_FILES + (GENERATION_PLOT,):
        if name.endswith(".png"):
            with Image.open(out / name) as image:
                image.verify()
            with Image.open(out / name) as image:
                assert image.format == "PNG" and 300 <= image.width <= 4000 and 150 <= image.height <= 4000, name
            assert f"({name})" in (out / "report.md").read_text()
    assert "legibility" in (out / "report.md").read_text()


def test_with_a_judge_the_report_measures_generated_characters(one_actor):
    _, report = one_actor
    generation = report["generation"]
    present = report["per_class_images"]
    assert generation["styles"] == sum(min(2, n) for n in present.values())
    assert generation["generated_images"] == 36 * generation["styles"]
    assert set(generation["real_accuracy"]) == set(present) and set(generation["generated_accuracy"]) == set(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    )
    assert generation["legibility"] == pytest.approx(
        generation["generated_accuracy_mean"] / generation["real_accuracy_mean"]
    )


def test_a_second_run_replaces_the_report_and_never_another_folder(sources, model_path, one_actor, tmp_path):
    out, _ = one_actor
    run_evaluation(model_path, sources, str(out), EvalOptions(num_workers=1))
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES + ("manifest.json", "_SUCCESS"))
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no staging, lock or earlier report left
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="busy: exists and is not a handvae report output"):
        run_evaluation(model_path, sources, str(tmp_path / "busy"))
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


def test_bad_models_and_empty_splits_are_named(sources, model_path, tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        run_evaluation(str(tmp_path / "absent.pt"), sources, str(tmp_path / "r"))
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="not a readable handvae model file"):
        run_evaluation(str(tmp_path / "corrupt.pt"), sources, str(tmp_path / "r"))
    save_model(tmp_path / "ten.pt", VAE(VAEConfig(num_classes=10, num_filters=2, num_latent=2)))
    with pytest.raises(ModelFileError, match="built for 28x28 images and 10 classes"):
        run_evaluation(str(tmp_path / "ten.pt"), sources, str(tmp_path / "r"))
    make_mnist_root(tmp_path / "empty", train=5, test=0)
    with pytest.raises(DataError, match="split 'test' of mnist_dir=.* holds no images"):
        run_evaluation(model_path, DataSources(mnist_dir=str(tmp_path / "empty")), str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_cli_prints_the_headline_figures_and_exits_2_on_a_bad_model(sources, model_path, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(
        app, ["evaluate", "--model", model_path, "--out", str(tmp_path / "rep"), "--mnist-dir", sources.mnist_dir]
    )
    assert ok.exit_code == 0, ok.output
    assert f"{MNIST_TEST} test images: accuracy" in ok.output and "report.md" in ok.output
    bad = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 2 and "model file not found" in bad.output
