"""The Classification Accuracy Score on data sets whose answer is known: real data scored as if it
were generated scores 1.0x of real; labels shuffled score near chance; soft targets are learnt; the
summary by hand."""

import pytest
import torch

from handvae.labels import CHARSET, NUM_CLASSES
from handvae.model.judge import JudgeTraining
from handvae.score.cas import TRAINING_SETS, summarize, train_and_test, training_sets

BUDGET = JudgeTraining(epochs=2, images_per_epoch=1_500, batch_size=50, blur_probability=0.0, max_shift=1)


def glyphs(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each of the 36 classes its own 4x4 pattern of 5x5 px blocks (a shape, not a position: the
    classifier's training shifts its images), with noise."""
    patterns = torch.rand(NUM_CLASSES, 4, 4, generator=torch.Generator().manual_seed(123)) < 0.5
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_CLASSES).repeat(per_class)
    images = torch.randint(0, 60, (len(labels), 28, 28), generator=generator, dtype=torch.uint8)
    strokes = patterns[labels].repeat_interleave(5, dim=1).repeat_interleave(5, dim=2)  # (N, 20, 20)
    images[:, 4:24, 4:24][strokes] = 255
    return images, labels


@pytest.fixture(scope="module")
def data():
    return {"train": glyphs(12, seed=0), "test": glyphs(4, seed=1)}


def test_real_data_scored_as_generated_scores_one(data):
    sets = training_sets(data["train"], data["train"])
    per_class = {name: train_and_test(sets[name], data["test"], BUDGET) for name in ("generated", "real")}
    assert per_class["real"] == per_class["generated"]  # the same data, seed and budget: the same classifier
    assert sum(per_class["real"].values()) / NUM_CLASSES > 0.9  # and it learned the bars


def test_shuffled_labels_score_near_chance(data):
    images, labels = data["train"]
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    accuracy = train_and_test((images, shuffled), data["test"], BUDGET)
    assert set(accuracy) == set(CHARSET)
    assert sum(accuracy.values()) / NUM_CLASSES < 0.15  # chance is 1/36


def test_soft_targets_are_learnt_instead_of_the_labels(data):
    images, labels = data["train"]
    moved = (labels + 1) % NUM_CLASSES  # every class's probability all on the next class
    targets = torch.nn.functional.one_hot(moved, NUM_CLASSES).float()
    accuracy = train_and_test((images, labels, targets), data["test"], BUDGET)
    assert sum(accuracy.values()) / NUM_CLASSES < 0.05  # it predicts the targets' classes, not the labels'
    test_images, test_labels = data["test"]
    following = train_and_test((images, labels, targets), (test_images, (test_labels + 1) % NUM_CLASSES), BUDGET)
    assert sum(following.values()) / NUM_CLASSES > 0.9


def test_training_sets_concatenate_real_and_generated():
    real = (torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([0, 1, 2]))
    generated = (torch.ones(2, 28, 28, dtype=torch.uint8), torch.tensor([10, 11]))
    sets = training_sets(real, generated)
    assert list(sets) == list(TRAINING_SETS)
    assert sets["real+generated"][1].tolist() == [0, 1, 2, 10, 11] and sets["real+generated"][0][3:].eq(1).all()


def test_summary_by_hand():
    def accuracy(digit, letter):
        return {c: (digit if c.isdigit() else letter) for c in CHARSET}

    # Two seeds: the figures come from the accuracies per character averaged over them.
    report = summarize(
        {
            "generated": [accuracy(0.9, 0.6), accuracy(0.7, 0.6)],
            "real+generated": [accuracy(1.0, 0.8), accuracy(1.0, 0.7)],
            "real": [accuracy(1.0, 0.7), accuracy(1.0, 0.7)],
        },
        seeds=(0, 1),
    )
    real = (10 * 1.0 + 26 * 0.7) / 36
    generated = (10 * 0.8 + 26 * 0.6) / 36
    assert report["cas"] == pytest.approx(generated)
    assert report["cas_over_real"] == pytest.approx(generated / real)
    assert report["augmentation_gain"] == pytest.approx(26 * 0.05 / 36)
    assert report["augmentation_gain_letters"] == pytest.approx(0.05) and report[
        "augmentation_gain_digits"
    ] == pytest.approx(0.0)
    assert report["trained_on"]["real"]["letters"] == pytest.approx(0.7)
    assert report["trained_on"]["generated"]["per_class_accuracy"]["0"] == pytest.approx(0.8)
    first, second = report["by_seed"]
    assert (first["seed"], second["seed"]) == (0, 1)
    assert first["cas"] == pytest.approx((10 * 0.9 + 26 * 0.6) / 36) and second["cas"] == pytest.approx(
        (10 * 0.7 + 26 * 0.6) / 36
    )
    assert first["augmentation_gain"] == pytest.approx(26 * 0.1 / 36) and second["augmentation_gain"] == pytest.approx(
        0.0
    )
    assert report["reference_classifier"]["images_per_epoch"] == 51_200 and report["reference_classifier"]["seeds"] == [
        0,
        1,
    ]


def test_summary_needs_a_result_for_every_seed():
    accuracy = {c: 1.0 for c in CHARSET}
    with pytest.raises(ValueError, match="real: 1 results for 2 seeds"):
        summarize(
            {"generated": [accuracy, accuracy], "real+generated": [accuracy, accuracy], "real": [accuracy]},
            seeds=(0, 1),
        )
