"""Scoring job: how well a generated data set trains a classifier for real handwriting (CAS).

    handvae score --dataset generated/NAME --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --out reports/NAME-cas

Reads the generated data set (a folder or URI written by `handvae generate`) and the real train and
test splits of the data flags with Ray Data, trains the reference classifier of `handvae.score.cas` on
the generated images, on real + generated, and on the real images, once with each of its seeds, as
Ray tasks (nine with the three seeds; in parallel where the cluster has the CPUs), tests each on the real test split,
and writes a report folder: metrics.json (every figure, per class and per seed too), report.md,
and cas.png (accuracy per character of the three training sets, means over the seeds), through
`handvae.score.reports`. Beside the usefulness, the novelty (`handvae.score.novelty`): how far the
generated characters lie from the real training records, against the real test split's characters,
for digits and letters apart. The reference classifier itself is `handvae.score.cas`, pure torch.
"""

import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from handvae import storage
from handvae.data import folders
from handvae.data.records import order_keys
from handvae.data.sources import (
    DataSources,
    keyed_tensors,
    plan_sources_folder,
    read_split,
    source_locations,
    to_tensors,
)
from handvae.errors import DataError
from handvae.formats import outputs
from handvae.labels import NUM_CLASSES
from handvae.model.judge import JudgeTraining
from handvae.runtime import init_ray
from handvae.score.cas import REFERENCE, REFERENCE_SEEDS, TRAINING_SETS, summarize, train_and_test, training_sets
from handvae.score.novelty import measure_novelty
from handvae.score.reports import write_report


def run_scoring(
    dataset: str,
    real: DataSources,
    out_dir: str,
    training: JudgeTraining = REFERENCE,
    seeds: tuple[int, ...] = REFERENCE_SEEDS,
) -> dict:
    """Score the generated data set at `dataset` against the real data of `real`; write and return
    the report. `training` and `seeds` are the reference classifier's (the command always uses
    REFERENCE and REFERENCE_SEEDS; tests give a smaller budget)."""
    generated_sources = DataSources(dataset=dataset)
    inputs = (*source_locations(generated_sources), *source_locations(real))
    with outputs.folder_output(out_dir, "score", inputs) as staged:  # checked, writable and locked before Ray starts
        report = _score(generated_sources, real, training, seeds)
        write_report(staged.path, report)
        staged.manifest.update({"dataset": dataset})
    return report


def _score(generated_sources: DataSources, real: DataSources, training: JudgeTraining, seeds: tuple[int, ...]) -> dict:
    init_ray(extra_cpus=len(TRAINING_SETS))
    dataset = generated_sources.dataset
    generated_images, generated_labels, record_keys = keyed_tensors(read_split(generated_sources, None))  # both splits
    style_keys = _style_sample_keys(plan_sources_folder(generated_sources), record_keys.numpy())
    real_train_keyed = keyed_tensors(read_split(real, "train"))
    generated, real_train = (generated_images, generated_labels), real_train_keyed[:2]
    real_test = to_tensors(read_split(real, "test"))
    for name, (images, _) in (
        (f"generated data set {dataset}", generated),
        ("real training split", real_train),
        ("real test split", real_test),
    ):
        if len(images) == 0:
            raise DataError(f"{name}: holds no images")
    missing = sorted(set(range(NUM_CLASSES)) - set(generated[1].unique().tolist()))
    if missing:
        raise DataError(f"{dataset}: holds no images of labels {missing}; CAS needs every class of the real test split")

    started = time.perf_counter()
    # Seconds, before the trainings take the CPUs.
    novelty = measure_novelty((*generated, torch.from_numpy(style_keys)), real_train_keyed, real_test)
    test = ray.put(real_test)
    sets = training_sets(real_train, generated)
    stored = {name: ray.put(sets[name]) for name in TRAINING_SETS}
    runs = {
        name: [_train_and_test.remote(stored[name], test, replace(training, seed=seed)) for seed in seeds]
        for name in TRAINING_SETS
    }
    return {
        "dataset": dataset,
        "real": real.describe(),
        "images": {"generated": len(generated[1]), "real_train": len(real_train[1]), "real_test": len(real_test[1])},
        **summarize({name: ray.get(refs) for name, refs in runs.items()}, seeds, training),
        "novelty": {part: figures.to_dict() for part, figures in novelty.items()},
        "seconds": time.perf_counter() - started,
    }


def _style_sample_keys(plan: folders.FolderPlan, record_keys: np.ndarray) -> np.ndarray:
    """The style sample's key (`style_id`, which `handvae generate` writes from the sample's source
    and row) of each record of a folder, given the records' own keys (`order_keys` of the file and
    row the readers give them). A folder without `style_id` (prepared: its records keep their
    original source and row) gives the records' own keys."""
    if plan.prepared:
        return record_keys
    fs, root = storage.resolve_input(plan.root)
    keys, styles = [], []
    for file in sorted({unit.file for unit in plan.units}):
        try:
            table = pq.read_table(fs.open_input_file(f"{root}/{file}"), columns=["style_id"])
            column = table.column("style_id").to_numpy()
        except KeyError:
            return record_keys
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{plan.path(file)}: not readable as the data set's parquet ({exc})") from None
        keys.append(order_keys(np.full(len(column), file, dtype=object), np.arange(len(column))))
        styles.append(column)
    keys, styles = np.concatenate(keys), np.concatenate(styles)
    order = np.argsort(keys)
    return styles[order][np.searchsorted(keys[order], record_keys)]


@ray.remote(num_cpus=1)
def _train_and_test(
    train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], training: JudgeTraining
) -> dict[str, float]:
    torch.set_num_threads(1)  # one CPU per task, as reserved
    return train_and_test(train, test, training)
