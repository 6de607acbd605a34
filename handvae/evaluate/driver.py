"""Evaluation job: the seed's "Assessing model accuracy" figures and plots, for any model file and split.

    handvae evaluate --model runs/NAME/model.pt --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --split test --out reports/NAME

The driver (this module) plans and adds up; the model actors are `handvae.evaluate.worker`'s; the
report's files are written by `handvae.evaluate.reports`. Ray Data runs the model over every row of
the split on an actor pool (one model load per actor,
batch inference: no row is dropped or repeated, whatever the number of actors). Each image's
posterior sample is drawn from a seed of its own (source, row), so the figures do not depend on
how rows were batched. The driver adds up the batches (handvae.evaluate.metrics) and writes the report
folder (local, or any URI pyarrow writes), whole, through the output policy (handvae.formats.outputs):

    OUT/metrics.json            every figure, with the model, data and split they came from
    OUT/pixel_accuracy.png      per-pixel reconstruction accuracy, with a colour bar
    OUT/per_class_accuracy.png  accuracy per character
    OUT/confusion_matrix.png    true x predicted, labelled 0-9 A-Z
    OUT/reconstructions.png     one test image per character over its reconstruction
    OUT/alphabets.png           the seed's last cell: full alphabets in a few test styles
    OUT/report.md               the headline figures, embedding the PNGs
    OUT/manifest.json, _SUCCESS handvae's record of the files it wrote (what lets a re-run replace them)
"""

import os
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.classification import MulticlassAccuracy

from handvae import storage
from handvae.data.records import IMAGE_SIDE
from handvae.data.sources import DataSources, plan_sources_folder, read_split, source_locations
from handvae.errors import COUNT_MAX, SEED_MAX, DataError, check_int
from handvae.evaluate.metrics import EvaluationMetrics
from handvae.evaluate.reports import write_report
from handvae.evaluate.worker import Evaluator
from handvae.formats import outputs
from handvae.formats.checkpoints import MODEL_FILE, REPORT_DIR
from handvae.formats.model_file import load_judge
from handvae.inference import load_checked_model, map_with_model, start_ray_for_actors
from handvae.labels import NUM_CLASSES
from handvae.model.drawing import Drawing
from handvae.model.judge import assess_generation, judge_predictions
from handvae.rng import mix64
from handvae.runtime import hiding_actor_restart_notice


@dataclass(frozen=True)
class EvalOptions:
    split: str = "test"
    """Which split of the sources to evaluate."""
    num_workers: int | None = None
    """Model actors; by default one per CPU but one (one per GPU with use_gpu)."""
    use_gpu: bool = False
    """One GPU per model actor."""
    batch_size: int = 1024
    """Images per inference call."""
    seed: int = 0
    """Seeds each image's posterior sample, the choice of style images and their draws."""
    judge: str | None = None
    """A judge file (`handvae train-judge`): also measure legibility and variety of generated characters."""
    styles_per_class: int = 10
    """With a judge: real images of each class whose styles are decoded as all 36 characters."""

    def __post_init__(self):
        if self.num_workers is not None:
            check_int("--num-workers", self.num_workers, 1, COUNT_MAX)
        check_int("batch_size", self.batch_size, 1, 1 << 20)
        check_int("--seed", self.seed, 0, SEED_MAX)
        check_int("--styles-per-class", self.styles_per_class, 1, COUNT_MAX)


def run_evaluation(model_path: str, sources: DataSources, out_dir: str, options: EvalOptions = EvalOptions()) -> dict:
    """Evaluate, write the report folder, and return metrics.json's content."""
    model, metadata = load_checked_model(model_path)  # a bad model file fails here, before any actor
    loaded_judge = load_judge(options.judge) if options.judge else (None, {})  # and a bad judge file
    drawing = Drawing.from_metadata(metadata)  # the alphabets as the model's recipe draws them
    folder = plan_sources_folder(sources)  # a data set folder's footers: an empty split fails before Ray starts
    if folder is not None and folder.rows(options.split) == 0:
        raise DataError(f"split {options.split!r} of {_describe(sources)} holds no images")
    inputs = (model_path, options.judge, *source_locations(sources))
    with outputs.folder_output(out_dir, "report", inputs) as staged:  # checked, writable and locked before Ray starts
        report, examples = _evaluate(model, metadata, drawing, model_path, sources, options, loaded_judge)
        write_report(staged.path, report, model, examples, options.seed, drawing)
        staged.manifest.update({"model": report["model"], "split": options.split})
    return report


def _evaluate(
    model, metadata, drawing, model_path, sources, options, loaded_judge
) -> tuple[dict, dict[int, np.ndarray]]:
    """metrics.json's content, and one example image per class."""
    # --out is not among them: the driver writes the report.
    reached = {"--model": model_path, "--letters-csv": sources.letters_csv, "--prepared": sources.prepared_dir}
    workers = start_ray_for_actors(options.num_workers, options.use_gpu, reached)
    records = read_split(sources, options.split)
    results = map_with_model(
        records, Evaluator, model_path, (options.seed,), workers, options.use_gpu, options.batch_size
    )
    judge, judge_metadata = loaded_judge
    metrics = EvaluationMetrics(IMAGE_SIDE)
    judged = MulticlassAccuracy(num_classes=NUM_CLASSES, average=None)
    # A random (by the seed) but batching-independent sample of each class: the reconstruction
    # grid's examples, the alphabet sheet's styles, and with a judge the styles and real images
    # that generated characters are compared with.
    samples = ClassSample(options.styles_per_class * NUM_CLASSES if judge else 1, options.seed)
    with hiding_actor_restart_notice():
        for batch in results.iter_batches(batch_format="numpy", batch_size=None):
            hits = np.unpackbits(batch["recon_hits"], axis=1, count=IMAGE_SIDE * IMAGE_SIDE).reshape(
                -1, IMAGE_SIDE, IMAGE_SIDE
            )
            labels = torch.tensor(batch["label"]).long()
            metrics.update(
                labels,
                torch.tensor(batch["predicted"]),
                torch.from_numpy(hits.astype(bool)),
                torch.tensor(batch["losses"]),
                batch["source"].tolist(),
            )
            samples.add(batch["label"], batch["order_key"], batch["image"])
            if judge:
                judged.update(judge_predictions(judge, torch.tensor(batch["image"])), labels)
    if metrics.images == 0:
        raise DataError(f"split {options.split!r} of {_describe(sources)} holds no images")
    report = {
        "model": os.path.abspath(model_path),
        "model_metadata": {k: metadata.get(k) for k in ("run_name", "epoch") if k in metadata},
        "drawing": drawing.to_dict(),
        "data": sources.describe(),
        "split": options.split,
        "seed": options.seed,
        **metrics.compute(),
    }
    examples = samples.by_class()
    if judge:
        present = metrics.confusion.compute().sum(dim=1).nonzero().flatten().tolist()
        real_accuracy = dict(zip(present, judged.compute()[present].tolist()))
        report["generation"] = {
            "judge": os.path.abspath(options.judge),
            "judge_metadata": judge_metadata,
            **assess_generation(
                model,
                judge,
                {c: torch.from_numpy(v) for c, v in examples.items()},
                real_accuracy,
                options.styles_per_class,
                options.seed,
                drawing,
            ),
        }
    return report, {c: v[0] for c, v in examples.items()}


class ClassSample:
    """Keeps, per class, the `size` records of the smallest rank (a hash of their order key and the
    seed): the same random sample however the records arrive."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self.kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # class -> (ranks, images)

    def add(self, labels: np.ndarray, order_keys: np.ndarray, images: np.ndarray) -> None:
        ranks = mix64(order_keys, self.seed)
        for c in np.unique(labels).tolist():
            mine = labels == c
            old_ranks, old_images = self.kept.get(c, (ranks[:0], images[:0]))
            all_ranks, all_images = np.concatenate([old_ranks, ranks[mine]]), np.concatenate([old_images, images[mine]])
            keep = np.argsort(all_ranks, kind="stable")[: self.size]
            self.kept[c] = (all_ranks[keep], all_images[keep])

    def by_class(self) -> dict[int, np.ndarray]:
        """class -> images (n, S, S), in rank order."""
        return {c: images for c, (_, images) in sorted(self.kept.items())}


def _describe(sources: DataSources) -> str:
    if sources.is_sample:
        return "the bundled sample"
    return ", ".join(
        f"{k}={v}"
        for k, v in (
            ("letters_csv", sources.letters_csv),
            ("mnist_dir", sources.mnist_dir),
            ("prepared", sources.prepared_dir),
        )
        if v
    )


def run_report(run_dir: str, sources: DataSources, use_gpu: bool, seed: int) -> dict:
    """The evaluation report of a finished training run, into RUN/report: what `handvae train`
    chains after training (a run's model on its own test split)."""
    model_path = storage.join(run_dir, MODEL_FILE)
    return run_evaluation(
        model_path, sources, storage.join(run_dir, REPORT_DIR), EvalOptions(use_gpu=use_gpu, seed=seed)
    )
