"""The scoring job end to end: a generated data set scored against real data through Ray, its
report folder, and its errors. The score's figures on data with known answers are in test_cas.py."""

import json

import pytest
import torch
from typer.testing import CliRunner

from handvae.cli import app
from handvae.data.sources import DataSources, keyed_tensors, plan_sources_folder, read_split, to_tensors
from handvae.formats.model_file import save_model
from handvae.generate.driver import GenerateOptions, run_generation
from handvae.labels import CHARSET
from handvae.model.judge import JudgeTraining
from handvae.model.vae import VAE, VAEConfig
from handvae.score.cas import TRAINING_SETS, summarize
from handvae.score.driver import _style_sample_keys, run_scoring
from handvae.score.reports import markdown, summary

from conftest import make_letters, make_mnist_root, write_kaggle_csv

pytestmark = pytest.mark.usefixtures("ray_local")
SMALL_BUDGET = JudgeTraining(epochs=1, images_per_epoch=256, batch_size=64)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    images, labels = make_letters(104, learnable=True)
    make_mnist_root(root / "mnist", train=20, test=10)
    return DataSources(
        letters_csv=str(write_kaggle_csv(root / "az.csv", images, labels)), mnist_dir=str(root / "mnist")
    )


@pytest.fixture(scope="module")
def generated(real, tmp_path_factory):
    torch.manual_seed(0)
    model = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(model, VAE(VAEConfig(num_filters=4, num_latent=3)))
    out = tmp_path_factory.mktemp("gen") / "set"
    run_generation(
        str(model), real, str(out), GenerateOptions(split="train", num_styles=3, num_workers=1)
    )  # own-class: 3 of each
    return str(out)


def test_a_generated_set_is_scored_into_a_report_folder(real, generated, tmp_path):
    report = run_scoring(generated, real, str(tmp_path / "cas"), SMALL_BUDGET, seeds=(0, 1))
    assert report["images"]["generated"] == 3 * 36
    assert set(report["trained_on"]) == set(TRAINING_SETS)
    test_labels = to_tensors(read_split(real, "test"))[1]
    assert report["images"]["real_test"] == len(test_labels)
    for figures in report["trained_on"].values():  # every class of the real test split, once
        assert set(figures["per_class_accuracy"]) == {CHARSET[c] for c in test_labels.unique().tolist()}
    real_accuracy = report["trained_on"]["real"]["mean_per_class_accuracy"]
    assert report["cas"] == report["trained_on"]["generated"]["mean_per_class_accuracy"]
    assert report["cas_over_real"] == pytest.approx(report["cas"] / real_accuracy)
    assert report["reference_classifier"]["images_per_epoch"] == SMALL_BUDGET.images_per_epoch
    assert [s["seed"] for s in report["by_seed"]] == [0, 1]  # each seed's figures, their mean the headline
    assert report["augmentation_gain"] == pytest.approx(sum(s["augmentation_gain"] for s in report["by_seed"]) / 2)
    written = json.loads((tmp_path / "cas" / "metrics.json").read_text())
    assert written["cas"] == report["cas"] and (tmp_path / "cas" / "cas.png").stat().st_size > 0
    assert (
        "CAS / real" in (tmp_path / "cas" / "report.md").read_text()
        and "| seed 1 |" in (tmp_path / "cas" / "report.md").read_text()
    )
    assert json.loads((tmp_path / "cas" / "manifest.json").read_text())["format"] == "handvae.score"
    # Novelty beside the usefulness: every drawing is of a training sample's style, and an untrained
    # decoder's grey blur is near no real record (the figures on known answers: test_novelty.py).
    novelty = report["novelty"]
    assert (novelty["digits"]["generated"], novelty["letters"]["generated"]) == (3 * 10, 3 * 26)
    for figures in novelty.values():
        assert (
            figures["ratio"] == pytest.approx(figures["generated_distance"] / figures["new_writer_distance"])
            and figures["ratio"] > 0
        )
        assert 0 <= figures["nearest_is_own_sample"] <= 1 and figures["spread"] > 0
    assert written["novelty"] == novelty and "## Novelty" in (tmp_path / "cas" / "report.md").read_text()
    line = summary(report).splitlines()[1]
    assert line.startswith("novelty") and f"letters {novelty['letters']['ratio']:.2f}x" in line
    assert f"spread {novelty['letters']['spread']:.2f}x" in line


def test_each_generated_character_is_keyed_by_its_style_sample_in_the_training_split(real, generated):
    sources = DataSources(dataset=generated)
    _, labels, record_keys = keyed_tensors(read_split(sources, None))
    styles = _style_sample_keys(plan_sources_folder(sources), record_keys.numpy())
    _, train_labels, train_keys = keyed_tensors(read_split(real, "train"))
    of_key = dict(zip(train_keys.tolist(), train_labels.tolist()))
    assert len(set(record_keys.tolist())) == len(labels) == 3 * 36  # the records' own keys: one each
    assert [of_key[k] for k in styles.tolist()] == labels.tolist()  # own-class: a sample of the drawn class


def test_bad_inputs_are_named(real, generated, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(
        app,
        ["score", "--dataset", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"), "--mnist-dir", real.mnist_dir],
    )
    assert missing.exit_code == 2 and "nothing" in missing.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    taken = runner.invoke(
        app, ["score", "--dataset", generated, "--out", str(tmp_path / "mine"), "--mnist-dir", real.mnist_dir]
    )
    assert (
        taken.exit_code == 2 and "mine" in taken.output and (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    )


def test_a_report_against_letters_alone_shows_no_digit_figures():
    letters = {c: 0.5 for c in CHARSET[10:]}  # real data without MNIST: no digit test images
    report = {"dataset": "set", "images": {"generated": 36, "real_train": 26, "real_test": 26}}
    report.update(summarize({name: [letters, letters] for name in TRAINING_SETS}, seeds=(0, 1), training=SMALL_BUDGET))
    text = markdown(report)
    assert "| augmentation gain, digits | none | none | none |" in text
    assert (
        "| augmentation gain, letters | +0.00 | +0.00 | +0.00 |" in text and "| real | 50.00% | none | 50.00% |" in text
    )
