"""Scoring job: how well a generated data set trains a classifier for real handwriting (CAS).

    handvae score --dataset generated/NAME --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --out reports/NAME-cas

Reads the generated data set (a folder or URI written by `handvae generate`) and the real train and
test splits of the data flags with Ray Data, trains the reference classifier of `handvae.cas` on
the generated images, on real + generated, and on the real images, once with each of its seeds, as
Ray tasks (nine with the three seeds; in parallel where the cluster has the CPUs), tests each on the real test split,
and writes a report folder: metrics.json (every figure, per class and per seed too), report.md,
and cas.png (accuracy per character of the three training sets, means over the seeds).
"""

import json
import os
import time
from dataclasses import replace

import ray
import torch

from handvae import outputs, plots
from handvae.cas import REFERENCE, REFERENCE_SEEDS, TRAINING_SETS, summarize, train_and_test, training_sets
from handvae.data.datasets import DataSources, read_split, source_locations, to_tensors
from handvae.errors import DataError
from handvae.judge import JudgeTraining
from handvae.labels import NUM_CLASSES
from handvae.runtime import init_ray

REPORT_PLOT = "cas.png"


def run_scoring(
    dataset: str, real: DataSources, out_dir: str, training: JudgeTraining = REFERENCE, seeds: tuple[int, ...] = REFERENCE_SEEDS
) -> dict:
    """Score the generated data set at `dataset` against the real data of `real`; write and return
    the report. `training` and `seeds` are the reference classifier's (the command always uses
    REFERENCE and REFERENCE_SEEDS; tests give a smaller budget)."""
    generated_sources = DataSources(dataset=dataset)
    inputs = (*source_locations(generated_sources), *source_locations(real))
    with outputs.folder_output(out_dir, "score", inputs) as staged:  # checked, writable and locked before Ray starts
        report = _score(generated_sources, real, training, seeds)
        _write_report(staged.path, report)
        staged.manifest.update({"dataset": dataset})
    return report


def _score(generated_sources: DataSources, real: DataSources, training: JudgeTraining, seeds: tuple[int, ...]) -> dict:
    init_ray(extra_cpus=len(TRAINING_SETS))
    dataset = generated_sources.dataset
    generated = to_tensors(read_split(generated_sources, None))  # all of it: both splits
    real_train, real_test = (to_tensors(read_split(real, split)) for split in ("train", "test"))
    for name, (images, _) in ((f"generated data set {dataset}", generated), ("real training split", real_train), ("real test split", real_test)):
        if len(images) == 0:
            raise DataError(f"{name}: holds no images")
    missing = sorted(set(range(NUM_CLASSES)) - set(generated[1].unique().tolist()))
    if missing:
        raise DataError(f"{dataset}: holds no images of labels {missing}; CAS needs every class of the real test split")

    started = time.perf_counter()
    test = ray.put(real_test)
    sets = training_sets(real_train, generated)
    stored = {name: ray.put(sets[name]) for name in TRAINING_SETS}
    runs = {name: [_train_and_test.remote(stored[name], test, replace(training, seed=seed)) for seed in seeds] for name in TRAINING_SETS}
    return {
        "dataset": dataset,
        "real": real.describe(),
        "images": {"generated": len(generated[1]), "real_train": len(real_train[1]), "real_test": len(real_test[1])},
        **summarize({name: ray.get(refs) for name, refs in runs.items()}, seeds, training),
        "seconds": time.perf_counter() - started,
    }


@ray.remote(num_cpus=1)
def _train_and_test(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], training: JudgeTraining) -> dict[str, float]:
    torch.set_num_threads(1)  # one CPU per task, as reserved
    return train_and_test(train, test, training)


def _write_report(folder: str, report: dict) -> None:
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    plots.classifier_comparison({name: report["trained_on"][name]["per_class_accuracy"] for name in TRAINING_SETS}, os.path.join(folder, REPORT_PLOT))
    with open(os.path.join(folder, "report.md"), "w") as f:
        f.write(_markdown(report))


def points(value: float | None) -> str:
    """A gain in points; "none" for digits or letters that the real test split lacks."""
    return "none" if value is None else f"{100 * value:+.2f}"


def _percent(value: float | None) -> str:
    """An accuracy; "none" as in `points`."""
    return "none" if value is None else f"{value:.2%}"


def _markdown(report: dict) -> str:
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
    table = "\n".join(f"| {label} | {show(report[key])} | " + " | ".join(show(s[key]) for s in seeds) + " |" for label, key, show in figures)
    reference = report["reference_classifier"]
    return f"""# Classification Accuracy Score of {report['dataset']}

A reference classifier trained on each set with each of {len(seeds)} seeds, tested on {report['images']['real_test']:,} real
test images (mean accuracy per character, then mean over the seeds). Generated: {report['images']['generated']:,} images;
real training split: {report['images']['real_train']:,} images.

| trained on | mean per class | digits | letters |
|---|---|---|---|
{rows}

| figure | mean over the seeds | {" | ".join(f"seed {s['seed']}" for s in seeds)} |
|---|---|{"---|" * len(seeds)}
{table}

The seeds' spread is the measure's own noise: a difference between two data sets smaller than it
is not a difference the score can show.

Reference classifier: {reference['architecture']}; {reference['epochs'] * reference['images_per_epoch'] // reference['batch_size']:,}
Adam steps of {reference['batch_size']} class-balanced images, shifts up to {reference['max_shift']} px, seeds {", ".join(map(str, reference['seeds']))}
(`handvae.cas.REFERENCE`, `REFERENCE_SEEDS`).

![accuracy per character of the three training sets, means over the seeds]({REPORT_PLOT})
"""
