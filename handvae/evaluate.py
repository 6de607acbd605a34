"""Evaluation job: the seed's "Assessing model accuracy" figures and plots, for any model file and split.

    handvae evaluate --model runs/NAME/model.pt --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --split test --out reports/NAME

Ray Data runs the model over every row of the split on an actor pool (one model load per actor,
batch inference: no row is dropped or repeated, whatever the number of actors). Each image's
posterior sample is drawn from a seed of its own (source, row), so the figures do not depend on
how rows were batched. The driver adds up the batches (handvae.metrics) and writes the report
folder (local, or any URI pyarrow writes), whole, through the output policy (handvae.outputs):

    OUT/metrics.json            every figure, with the model, data and split they came from
    OUT/pixel_accuracy.png      per-pixel reconstruction accuracy, with a colour bar
    OUT/per_class_accuracy.png  accuracy per character
    OUT/confusion_matrix.png    true x predicted, labelled 0-9 A-Z
    OUT/reconstructions.png     one test image per character over its reconstruction
    OUT/alphabets.png           the seed's last cell: full alphabets in a few test styles
    OUT/report.md               the headline figures, embedding the PNGs
    OUT/manifest.json, _SUCCESS handvae's record of the files it wrote (what lets a re-run replace them)
"""

import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from handvae import outputs
from handvae.data.datasets import DataSources, order_keys, read_split, source_locations
from handvae.errors import DataError
from handvae.data.records import IMAGE_SIDE, mix64
from handvae.engine import predict, seeded_normal
from handvae.labels import CHARSET, NUM_CLASSES
from handvae.inference import ModelActor, load_checked_model, map_with_model, start_ray_for_actors
from handvae.judge import assess_generation, judge_predictions, load_judge
from handvae.config import Drawing
from handvae.styles import draw_in_styles, reconstruct

REPORT_FILES = ("metrics.json", "pixel_accuracy.png", "per_class_accuracy.png", "confusion_matrix.png", "reconstructions.png", "alphabets.png", "report.md")
GENERATION_PLOT = "generation.png"  # with a judge only
ALPHABET_STYLES = 6  # as many test styles as the seed's last cell draws


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
        if self.num_workers is not None and self.num_workers < 1:
            raise DataError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.seed < 0:
            raise DataError(f"seed must be >= 0, got {self.seed}")
        if self.styles_per_class < 1:
            raise DataError(f"styles_per_class must be >= 1, got {self.styles_per_class}")


class _Evaluator(ModelActor):
    """Maps batches of records to per-image results."""

    def __init__(self, model_path: str, use_gpu: bool, seed: int):
        super().__init__(model_path, use_gpu)
        self.seed = seed

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = order_keys(batch["source"], batch["row"])
        noise = seeded_normal([(self.seed, int(k)) for k in keys], self.model.config.num_latent)
        images = torch.tensor(batch["image"], device=self.device)
        labels = torch.tensor(batch["label"], device=self.device).long()
        out = predict(self.model, images, labels, noise.to(self.device))
        losses = torch.stack([out.terms.cat, out.terms.recon, out.terms.kl], dim=1)
        return {
            "label": batch["label"],
            "predicted": out.predicted.cpu().numpy().astype(np.uint8),
            # 1 bit a pixel on the way back to the driver
            "recon_hits": np.packbits(out.recon_hits.cpu().numpy().reshape(len(keys), -1), axis=1),
            "losses": losses.cpu().numpy(),
            "source": batch["source"],
            "order_key": keys,
            "image": batch["image"],
        }


def run_evaluation(model_path: str, sources: DataSources, out_dir: str, options: EvalOptions = EvalOptions()) -> dict:
    """Evaluate, write the report folder, and return metrics.json's content."""
    model, metadata = load_checked_model(model_path)  # a bad model file fails here, before any actor
    drawing = Drawing.from_metadata(metadata)  # the alphabets as the model's recipe draws them
    inputs = (model_path, options.judge, *source_locations(sources))
    with outputs.folder_output(out_dir, "report", inputs) as staged:  # checked, writable and locked before Ray starts
        report, examples = _evaluate(model, metadata, drawing, model_path, sources, options)
        _write_report(staged.path, report, model, examples, options.seed, drawing)
        staged.manifest.update({"model": report["model"], "split": options.split})
    return report


def _evaluate(model, metadata, drawing, model_path, sources, options) -> tuple[dict, dict[int, np.ndarray]]:
    """metrics.json's content, and one example image per class."""
    # Imported here, in the driver: each actor imports this module for _Evaluator, and torchmetrics
    # (which brings torchvision) and matplotlib made that import take 8.1 s of CPU, not 4.6 s.
    from torchmetrics.classification import MulticlassAccuracy

    from handvae.metrics import EvaluationMetrics

    workers = start_ray_for_actors(options.num_workers, options.use_gpu)
    records = read_split(sources, options.split)
    results = map_with_model(records, _Evaluator, model_path, (options.seed,), workers, options.use_gpu, options.batch_size)
    judge, judge_metadata = load_judge(options.judge) if options.judge else (None, {})
    metrics = EvaluationMetrics(IMAGE_SIDE)
    judged = MulticlassAccuracy(num_classes=NUM_CLASSES, average=None)
    # A random (by the seed) but batching-independent sample of each class: the reconstruction
    # grid's examples, the alphabet sheet's styles, and with a judge the styles and real images
    # that generated characters are compared with.
    samples = ClassSample(options.styles_per_class * NUM_CLASSES if judge else 1, options.seed)
    for batch in results.iter_batches(batch_format="numpy", batch_size=None):
        hits = np.unpackbits(batch["recon_hits"], axis=1, count=IMAGE_SIDE * IMAGE_SIDE).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
        labels = torch.tensor(batch["label"]).long()
        metrics.update(labels, torch.tensor(batch["predicted"]), torch.from_numpy(hits.astype(bool)), torch.tensor(batch["losses"]), batch["source"].tolist())
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
            **assess_generation(model, judge, {c: torch.from_numpy(v) for c, v in examples.items()}, real_accuracy, options.styles_per_class, options.seed, drawing),
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


def _write_report(staging: str, report: dict, model, examples: dict[int, np.ndarray], seed: int, drawing: Drawing) -> None:
    """The report's files, into the (local) staging folder of the output."""
    from handvae import plots  # the driver's only: see _evaluate

    with open(os.path.join(staging, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    plots.pixel_accuracy_map(np.array(report["per_pixel_recon_accuracy"]), os.path.join(staging, "pixel_accuracy.png"))
    plots.per_class_accuracy(report["per_class_accuracy"], report["per_class_images"], os.path.join(staging, "per_class_accuracy.png"))
    plots.confusion_matrix(np.array(report["confusion_matrix"]), os.path.join(staging, "confusion_matrix.png"))

    labels = np.array(sorted(examples))
    originals = torch.from_numpy(np.stack([examples[c] for c in labels]))
    torch.manual_seed(seed)
    recons, predicted = reconstruct(model, originals)
    plots.reconstructions(originals.numpy(), recons.numpy(), labels, predicted.numpy(), os.path.join(staging, "reconstructions.png"))

    # A few styles spread over the classes present, each drawn once from its posterior.
    picks = labels[np.linspace(0, len(labels) - 1, min(ALPHABET_STYLES, len(labels))).round().astype(int)]
    sheet = draw_in_styles(model, originals[np.searchsorted(labels, picks)], [(seed, int(c)) for c in picks], torch.arange(NUM_CLASSES), drawing)
    plots.character_sheet(
        sheet[:, 0].numpy(), list(CHARSET),
        [f"style of a test {CHARSET[c]}" for c in picks], os.path.join(staging, "alphabets.png"),
        "Generated alphabets: each row decodes every character in the style of one test image",
    )
    if "generation" in report:
        generation = report["generation"]
        plots.generation_quality(generation["real_accuracy"], generation["generated_accuracy"], generation["variety"], os.path.join(staging, GENERATION_PLOT))
    with open(os.path.join(staging, "report.md"), "w") as f:
        f.write(_markdown(report))


def _describe(sources: DataSources) -> str:
    if sources.is_sample:
        return "the bundled sample"
    return ", ".join(f"{k}={v}" for k, v in (("letters_csv", sources.letters_csv), ("mnist_dir", sources.mnist_dir), ("prepared", sources.prepared_dir)) if v)


def _markdown(report: dict) -> str:
    per_source = "\n".join(f"| {os.path.basename(s)} | {v['images']:,} | {v['accuracy']:.2%} |" for s, v in report["by_source"].items())
    worst = sorted(report["per_class_accuracy"].items(), key=lambda kv: kv[1])[:5]
    loss = report["loss"]
    return f"""# Evaluation of {os.path.basename(report['model'])} on the {report['split']} split

Model: `{report['model']}` {report['model_metadata'] or ''}
Data: {report['images']:,} images ({'bundled sample' if report['data']['bundled_sample'] else 'given sources'}), seed {report['seed']}.

| figure | value |
|---|---|
| classification accuracy | {report['accuracy']:.2%} |
| mean per-class accuracy | {report['mean_per_class_accuracy']:.2%} |
| reconstruction accuracy | {report['recon_accuracy']:.2%} |
| loss terms per image (cat, recon, kl) | {loss['cat']:.4f}, {loss['recon']:.4f}, {loss['kl']:.3f} |

| source | images | accuracy |
|---|---|---|
{per_source}

Hardest characters: {', '.join(f'{c} {a:.1%}' for c, a in worst)}.
{_generation_markdown(report.get("generation"))}

## Reconstruction accuracy per pixel
![per-pixel reconstruction accuracy](pixel_accuracy.png)

## Accuracy per character
![accuracy per character](per_class_accuracy.png)

## Confusion matrix
![confusion matrix](confusion_matrix.png)

## Originals and reconstructions
![originals over reconstructions](reconstructions.png)

## Generated alphabets
![generated alphabets](alphabets.png)
"""


def _generation_markdown(generation: dict | None) -> str:
    if not generation:
        return ""
    return f"""
## Generated characters, judged by a separate classifier

{generation['styles']} styles (real images of every class of the split, one posterior draw each) x 36 characters
= {generation['generated_images']:,} generated images, judged by `{generation['judge']}`.

| figure | value |
|---|---|
| judge accuracy on real characters (mean over classes) | {generation['real_accuracy_mean']:.2%} |
| judge accuracy on generated characters (mean over classes) | {generation['generated_accuracy_mean']:.2%} |
| legibility (generated / real) | {generation['legibility']:.3f}x |
| variety (pairwise distance, generated / real, mean over characters) | {generation['variety_mean']:.3f}x |

![judge accuracy and variety per character]({GENERATION_PLOT})
"""
