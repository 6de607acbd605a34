"""The training job on Ray Train with 2 CPU workers: completes, learns, checkpoints, resumes exactly,
survives a failed worker, and rejects bad settings before any worker starts."""

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from handvae.cli import app
from handvae.data.sources import DataSources
from handvae.evaluate.driver import run_report
from handvae.formats.checkpoints import FAULT_MARKER
from handvae.formats.model_file import load_model_and_metadata
from handvae.model.vae import VAEConfig
from handvae.train.config import TrainConfig
from handvae.train.driver import run_training
from handvae.train.worker import FAULT_INJECTION_ENV

from conftest import assert_same_weights, make_letters, write_kaggle_csv

pytestmark = pytest.mark.usefixtures("ray_local")
EPOCHS = 3
METRIC_KEYS = {
    "epoch",
    "cat_loss",
    "recon_loss",
    "kl_loss",
    "detail_recon_loss",
    "detail_kl_loss",
    "test_accuracy",
    "recon_accuracy",
    "images_per_second",
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    images, labels = make_letters(416, learnable=True)
    csv = write_kaggle_csv(tmp_path_factory.mktemp("data") / "az.csv", images, labels)
    return DataSources(letters_csv=str(csv))


@pytest.fixture(scope="module")
def config():
    return TrainConfig(
        epochs=EPOCHS,
        batch_size=16,
        num_workers=2,
        learning_rate=3e-3,
        report=False,
        model=VAEConfig(num_filters=8, num_latent=4, detail_latent=2),
    )


@pytest.fixture(scope="module")
def uninterrupted(sources, config, tmp_path_factory):
    """A run with its report, chained as `handvae train` chains it."""
    result = run_training(
        replace(config, tensorboard=True, report=True), sources, "straight", str(tmp_path_factory.mktemp("runs"))
    )
    run_report(result.run_dir, sources, use_gpu=False, seed=config.seed)
    return result


def test_two_workers_learn_and_write_one_record_per_epoch(uninterrupted):
    lines = open(f"{uninterrupted.run_dir}/metrics.jsonl").read().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for record in records:
        assert METRIC_KEYS <= set(record)
        assert record["images_per_second"] > 0 and 0 <= record["test_accuracy"] <= 1
        # Every test image counts once; an epoch leaves out at most (workers - 1) training images.
        assert 416 - 1 <= record["train_images"] + record["test_images"] <= 416
        assert record["train_images"] % 2 == 0
    assert records[-1]["recon_loss"] < records[0]["recon_loss"]
    assert records[-1]["cat_loss"] < records[0]["cat_loss"]
    assert records[-1]["detail_recon_loss"] < records[0]["detail_recon_loss"] and records[-1]["detail_kl_loss"] > 0
    import glob

    assert glob.glob(f"{uninterrupted.run_dir}/tensorboard/events.out.tfevents*")
    # The run folder carries its evaluation report; classification does not depend on z's noise.
    report = json.loads(open(f"{uninterrupted.run_dir}/report/metrics.json").read())
    assert report["images"] == records[-1]["test_images"] and report["accuracy"] == pytest.approx(
        records[-1]["test_accuracy"]
    )
    saved = json.loads(open(f"{uninterrupted.run_dir}/config.json").read())
    assert saved["train"]["epochs"] == EPOCHS and saved["data"]["letters_csv"].endswith("az.csv")


def test_model_file_round_trips(uninterrupted, config):
    model, metadata = load_model_and_metadata(uninterrupted.model_path)
    assert model.config == config.model and metadata["epoch"] == EPOCHS and metadata["run_name"] == "straight"
    x = torch.rand(2, 1, 28, 28)
    assert model(x)[0].shape == (2, 1, 28, 28)


def test_stopped_after_epoch_2_resumes_at_epoch_3_and_a_failed_worker_is_retried_with_the_same_weights(
    sources, config, uninterrupted, tmp_path, capfd, monkeypatch
):
    # Two promises in one resumed run (the suite's time is short): it starts at epoch 3, and a
    # worker that fails at the end of epoch 3 is retried from the epoch-2 checkpoint.
    storage = str(tmp_path)
    run_training(replace(config, epochs=2), sources, "resumed", storage)
    capfd.readouterr()
    monkeypatch.setenv(FAULT_INJECTION_ENV, "raise:3")
    result = run_training(replace(config, max_failures=1), sources, "resumed", storage)
    printed = capfd.readouterr().out
    assert "epoch 3/3" in printed and "epoch 1/3" not in printed and "epoch 2/3" not in printed
    assert (tmp_path / "resumed" / FAULT_MARKER).exists()
    assert [r["epoch"] for r in result.metrics] == [1, 2, 3]
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert_same_weights(result.model_path, uninterrupted.model_path)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--batch-size", "0"], "batch_size must be an integer in [1, 1,000,000,000], got 0"),
        (["--learning-rate", "2"], "learning_rate must be a number in (0, 1)"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--num-workers", "64"], "--num-workers 64: this machine has"),
    ],
)
def test_bad_settings_fail_before_any_worker_starts(tmp_path, flags, message):
    result = CliRunner().invoke(app, ["train", "--storage-path", str(tmp_path), "--run-name", "bad", *flags])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()


def test_resuming_with_another_recipe_is_refused(sources, config, uninterrupted):
    storage, name = uninterrupted.run_dir.rsplit("/", 1)
    with pytest.raises(ValueError, match="different recipe \\(batch_size differ"):
        run_training(replace(config, batch_size=32), sources, name, storage)


def test_pair_training_resumes_with_the_same_partners_and_cannot_copy_the_image(
    sources, config, uninterrupted, tmp_path
):
    paired = replace(config, epochs=2, pairing="same-class")
    straight = run_training(paired, sources, "paired", str(tmp_path))
    run_training(replace(paired, epochs=1), sources, "paired-resumed", str(tmp_path))
    resumed = run_training(paired, sources, "paired-resumed", str(tmp_path))
    assert_same_weights(resumed.model_path, straight.model_path)
    # The detail decoder is asked for another writer's character, which the codes of this one do not hold.
    assert straight.metrics[1]["detail_recon_loss"] > uninterrupted.metrics[1]["detail_recon_loss"]
    assert straight.metrics[1]["recon_loss"] == pytest.approx(uninterrupted.metrics[1]["recon_loss"], rel=0.2)
