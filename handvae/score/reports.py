"""The score's report folder: metrics.json, report.md and cas.png (matplotlib). Driver side only."""

import json
import os

from handvae import plots
from handvae.score.cas import TRAINING_SETS

REPORT_PLOT = "cas.png"


def write_report(folder: str, report: dict) -> None:
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    plots.classifier_comparison(
        {name: report["trained_on"][name]["per_class_accuracy"] for name in TRAINING_SETS},
        os.path.join(folder, REPORT_PLOT),
    )
    with open(os.path.join(folder, "report.md"), "w") as f:
        f.write(markdown(report))


def points(value: float | None) -> str:
    """A gain in points; "none" for digits or letters that the real test split lacks."""
    return "none" if value is None else f"{100 * value:+.2f}"


def _percent(value: float | None) -> str:
    """An accuracy; "none" as in `points`."""
    return "none" if value is None else f"{value:.2%}"


def ratio(value: float | None) -> str:
    """A novelty ratio; "none" for digits or letters without generated or test characters."""
    return "none" if value is None else f"{value:.2f}x"


def _share(value: float | None) -> str:
    """A share of generated characters; "none" where none was drawn from a training sample."""
    return "none" if value is None else f"{value:.1%}"


def _distance(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def novelty_markdown(novelty: dict, sample_note: str = "") -> str:
    """The novelty section of a report or a data set card (`handvae.score.novelty`'s figures)."""
    rows = "\n".join(
        f"| {part} | {f['generated']:,} | {_distance(f['generated_distance'])} | {_distance(f['new_writer_distance'])} "
        f"| {ratio(f['ratio'])} | {_share(f['nearest_is_own_sample'])} | {ratio(f['spread'])} |"
        for part, f in novelty.items()
    )
    return f"""## Novelty: how far the generated characters lie from the real training records

Median Euclidean distance (pixels in [0, 1]) from each character to the closest real training
character of its class: the generated ones against the real test split's (writers the model never
saw). The ratio is ~0x for copies of the training records, ~1.0x for characters as new as a new
writer's. Last column: the share of generated characters whose closest real one is the very
training sample they were drawn in the style of. Novelty is not variety: drawings that all look
alike (a class's mean character, say) lie as far from every record as a new writer's do. The spread
tells them apart: the median distance between two generated characters of a class against two real
training characters of it (mean over the classes; ~1x as varied as the real ones, ~0x all alike).{sample_note}

| part | generated | generated to closest record | new writers to closest record | novelty | nearest their own style sample | spread |
|---|---|---|---|---|---|---|
{rows}
"""


def markdown(report: dict) -> str:
    rows = "\n".join(
        f"| {name} | {_percent(f['mean_per_class_accuracy'])} | {_percent(f['digits'])} | {_percent(f['letters'])} |"
        for name, f in report["trained_on"].items()
    )
    seeds = report["by_seed"]
    figures = (
        ("CAS (trained on generated only)", "cas", _percent),
        ("CAS / real", "cas_over_real", lambda v: f"{v:.3f}x"),
        ("augmentation gain (real + generated - real), points", "augmentation_gain", points),
        ("augmentation gain, digits", "augmentation_gain_digits", points),
        ("augmentation gain, letters", "augmentation_gain_letters", points),
    )
    table = "\n".join(
        f"| {label} | {show(report[key])} | " + " | ".join(show(s[key]) for s in seeds) + " |"
        for label, key, show in figures
    )
    reference = report["reference_classifier"]
    return f"""# Classification Accuracy Score of {report["dataset"]}

A reference classifier trained on each set with each of {len(seeds)} seeds, tested on {report["images"]["real_test"]:,} real
test images (mean accuracy per character, then mean over the seeds). Generated: {report["images"]["generated"]:,} images;
real training split: {report["images"]["real_train"]:,} images.

| trained on | mean per class | digits | letters |
|---|---|---|---|
{rows}

| figure | mean over the seeds | {" | ".join(f"seed {s['seed']}" for s in seeds)} |
|---|---|{"---|" * len(seeds)}
{table}

The seeds' spread is the measure's own noise: a difference between two data sets smaller than it
is not a difference the score can show.

Reference classifier: {reference["architecture"]}; {reference["epochs"] * reference["images_per_epoch"] // reference["batch_size"]:,}
Adam steps of {reference["batch_size"]} class-balanced images, shifts up to {reference["max_shift"]} px, seeds {", ".join(map(str, reference["seeds"]))}
(`handvae.score.cas.REFERENCE`, `REFERENCE_SEEDS`).

![accuracy per character of the three training sets, means over the seeds]({REPORT_PLOT})

{novelty_markdown(report["novelty"]) if "novelty" in report else ""}"""


def summary(report: dict) -> str:
    """The command's lines: CAS, the gain, its range over the seeds and the letters' gain; the novelty."""
    gains = sorted(s["augmentation_gain"] for s in report["by_seed"])
    trained_on = report["trained_on"]
    return (
        f"CAS {report['cas']:.2%} ({report['cas_over_real']:.3f}x of real {trained_on['real']['mean_per_class_accuracy']:.2%}); "
        f"real + generated {trained_on['real+generated']['mean_per_class_accuracy']:.2%} "
        f"({points(report['augmentation_gain'])} points, {points(gains[0])} to {points(gains[-1])} by seed; "
        f"letters {points(report['augmentation_gain_letters'])}); means over {len(gains)} seeds of the reference classifier"
        "\nnovelty (distance to the closest training record, against new writers'): "
        + "; ".join(
            f"{part} {ratio(f['ratio'])}"
            + (
                ""
                if f["nearest_is_own_sample"] is None
                else f", {_share(f['nearest_is_own_sample'])} nearest their own style sample"
            )
            + f", spread {ratio(f['spread'])}"
            for part, f in report["novelty"].items()
        )
    )
