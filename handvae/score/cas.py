"""Classification Accuracy Score (CAS) of a generated data set: what a classifier trained on it does
on real handwriting (Ravuri & Vinyals, "Classification Accuracy Score for Conditional Generative
Models", NeurIPS 2019). Pure torch, no Ray: `handvae.score.driver` reads the data sets and runs this.

One fixed reference classifier, `REFERENCE` (the judge's small CNN, `handvae.model.judge.Judge`, with the
budget and sampling below, kept stable so that figures compare across versions), is trained with
each of `REFERENCE_SEEDS` on each of three training sets, with the same budget, and tested each time
on the same real test images:

    generated        trained on the generated images only        -> CAS (mean accuracy per class)
    real+generated   trained on the real training images and the generated ones ("naive augmentation")
    real             trained on the real training images only    -> the reference for CAS

    CAS / real         = CAS / accuracy of the classifier trained on real data
    augmentation gain  = accuracy(real+generated) - accuracy(real), in points

Accuracies are means over classes (every character counts the same, whatever its number of test
images), as the paper's per-class figures and our 36 unevenly sized classes ask for, then means
over the seeds; each seed's own figures are kept beside them.
"""

from dataclasses import asdict

import torch

from handvae.labels import CHARSET, NUM_DIGITS
from handvae.model.judge import JudgeTraining, judge_predictions, per_class_accuracy, train_judge

REFERENCE = JudgeTraining(
    epochs=6, images_per_epoch=51_200, batch_size=128, learning_rate=1e-3, blur_probability=0.0, max_shift=2, seed=0
)
"""The reference classifier's training: 2,400 Adam steps of 128 class-balanced images (drawn with
replacement, every class equally likely), random shifts of up to 2 px, no blur. The same budget for
every training set, so the classifiers differ only in what they learn from (and their seed)."""
REFERENCE_SEEDS = (0, 1, 2)
"""Seeds of the reference classifier: each training set is learnt once with each, and the figures
are means over them. One training alone is not a stable measure: on the real data, the seed alone
moves the mean accuracy per class by up to 0.5 points and the augmentation gain of one data set
from -0.76 to +0.25 (docs/scoring.md), most of it where the boundary between `0` and `O` (and `5`
and `S`), which the classifier confuses about one time in three, happens to fall."""
TRAINING_SETS = ("generated", "real+generated", "real")
HEADLINE = ("cas", "cas_over_real", "augmentation_gain", "augmentation_gain_digits", "augmentation_gain_letters")
"""The figures of a score, also given for each seed."""


def training_sets(
    real: tuple[torch.Tensor, torch.Tensor], generated: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three training sets of the score, each uint8 images (N, 28, 28) and int64 labels (N,)."""
    both = (torch.cat([real[0], generated[0]]), torch.cat([real[1], generated[1]]))
    return {"generated": generated, "real+generated": both, "real": real}


def train_and_test(
    train: tuple[torch.Tensor, ...],
    test: tuple[torch.Tensor, torch.Tensor],
    training: JudgeTraining = REFERENCE,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Trains the reference classifier on `train` (on `device`) and returns its accuracy on `test` per
    character. `train`: images and labels, and optionally soft targets (`train_judge`'s `targets`;
    the score itself learns hard labels, so that its figures compare across versions)."""
    targets = train[2] if len(train) > 2 else None
    classifier = train_judge(train[0], train[1].long(), training, log=lambda line: None, device=device, targets=targets)
    accuracy = per_class_accuracy(judge_predictions(classifier, test[0]), test[1].long())
    return {CHARSET[c]: value for c, value in sorted(accuracy.items())}


def summarize(
    per_seed: dict[str, list[dict[str, float]]],
    seeds: tuple[int, ...] = REFERENCE_SEEDS,
    training: JudgeTraining = REFERENCE,
) -> dict:
    """The score from each training set's accuracy per character with each of `seeds`, in that
    order (`train_and_test` of each of TRAINING_SETS with `training` at each seed): CAS, CAS / real
    and the gain from the accuracies per character averaged over the seeds, with the means over all
    classes, digits and letters of each training set; `by_seed`, the same figures of each seed."""
    for name, runs in per_seed.items():
        if len(runs) != len(seeds):
            raise ValueError(f"{name}: {len(runs)} results for {len(seeds)} seeds")
    mean = {name: {c: sum(run[c] for run in runs) / len(runs) for c in runs[0]} for name, runs in per_seed.items()}
    by_seed = [
        {
            "seed": seed,
            **{k: v for k, v in _figures({name: runs[i] for name, runs in per_seed.items()}).items() if k in HEADLINE},
        }
        for i, seed in enumerate(seeds)
    ]
    return {
        **_figures(mean),
        "by_seed": by_seed,
        "reference_classifier": {
            "architecture": "handvae.model.judge.Judge (conv 32, pool, conv 64, pool, dense 128, dropout 0.3, dense 36)",
            **{k: v for k, v in asdict(training).items() if k != "seed"},
            "seeds": list(seeds),
        },
    }


def class_means(accuracy: dict[str, float]) -> dict[str, float | None]:
    """Mean accuracy per class over all the characters of `accuracy`, its digits and its letters
    (None for a part it lacks)."""
    digits = [v for c, v in accuracy.items() if CHARSET.index(c) < NUM_DIGITS]
    letters = [v for c, v in accuracy.items() if CHARSET.index(c) >= NUM_DIGITS]
    return {
        "mean_per_class_accuracy": sum(accuracy.values()) / len(accuracy),
        "digits": sum(digits) / len(digits) if digits else None,
        "letters": sum(letters) / len(letters) if letters else None,
    }


def _figures(per_class: dict[str, dict[str, float]]) -> dict:
    """CAS, CAS / real and the gains from each training set's accuracy per character."""
    figures = {name: {**class_means(accuracy), "per_class_accuracy": accuracy} for name, accuracy in per_class.items()}
    real, generated, both = (
        figures[name]["mean_per_class_accuracy"] for name in ("real", "generated", "real+generated")
    )

    def gain(part):
        a, b = figures["real+generated"][part], figures["real"][part]
        return None if a is None or b is None else a - b

    return {
        "cas": generated,
        "cas_over_real": generated / real if real else float("nan"),
        "augmentation_gain": both - real,
        "augmentation_gain_digits": gain("digits"),
        "augmentation_gain_letters": gain("letters"),
        "trained_on": figures,
    }
