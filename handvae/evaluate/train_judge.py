"""`handvae train-judge`: the separate classifier that judges generated characters, trained on real
training images only and saved as a judge file (`handvae.formats.model_file`).

    handvae train-judge --letters-csv "A_Z Handwritten Data.csv" --mnist-dir data/mnist --out judge.pt
"""

from collections.abc import Callable
from dataclasses import asdict

from handvae.data.sources import DataSources, read_split, to_tensors
from handvae.formats.model_file import save_judge
from handvae.model.judge import JudgeTraining, judge_predictions, per_class_accuracy, train_judge
from handvae.runtime import init_ray


def run_judge_training(
    sources: DataSources, out: str, training: JudgeTraining, log: Callable[[str], None] = print
) -> float:
    """Train the judge on the real training split, save it to `out` (a path or URI) with its data,
    recipe and test accuracy; return that accuracy (the mean over classes of the test split)."""
    init_ray()
    train_images, train_labels = to_tensors(read_split(sources, "train"))
    test_images, test_labels = to_tensors(read_split(sources, "test"))
    log(f"training the judge on {len(train_labels):,} real training images")
    judge = train_judge(train_images, train_labels, training, log=log)
    accuracy = per_class_accuracy(judge_predictions(judge, test_images), test_labels)
    mean = sum(accuracy.values()) / len(accuracy)
    save_judge(
        out, judge, {"data": sources.describe(), "training": asdict(training), "test_accuracy_mean_over_classes": mean}
    )
    log(f"judge accuracy on {len(test_labels):,} real test images: {mean:.2%} (mean over classes); wrote {out}")
    return mean
