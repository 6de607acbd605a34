"""The evaluation report's files: metrics.json, the plots (matplotlib) and report.md. Driver side only."""

import json
import os

import numpy as np
import torch

from handvae import plots, rng
from handvae.labels import CHARSET, NUM_CLASSES
from handvae.model.drawing import Drawing, draw_in_styles, reconstruct

REPORT_FILES = (
    "metrics.json",
    "pixel_accuracy.png",
    "per_class_accuracy.png",
    "confusion_matrix.png",
    "reconstructions.png",
    "alphabets.png",
    "report.md",
)
GENERATION_PLOT = "generation.png"  # with a judge only
ALPHABET_STYLES = 6  # as many test styles as the seed's last cell draws


def write_report(
    staging: str, report: dict, model, examples: dict[int, np.ndarray], seed: int, drawing: Drawing
) -> None:
    """The report's files, into the (local) staging folder of the output."""
    with open(os.path.join(staging, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    plots.pixel_accuracy_map(np.array(report["per_pixel_recon_accuracy"]), os.path.join(staging, "pixel_accuracy.png"))
    plots.per_class_accuracy(
        report["per_class_accuracy"], report["per_class_images"], os.path.join(staging, "per_class_accuracy.png")
    )
    plots.confusion_matrix(np.array(report["confusion_matrix"]), os.path.join(staging, "confusion_matrix.png"))

    labels = np.array(sorted(examples))
    originals = torch.from_numpy(np.stack([examples[c] for c in labels]))
    rng.seed_global(seed)  # the reconstructions' posterior samples
    recons, predicted = reconstruct(model, originals)
    plots.reconstructions(
        originals.numpy(), recons.numpy(), labels, predicted.numpy(), os.path.join(staging, "reconstructions.png")
    )

    # A few styles spread over the classes present, each drawn once from its posterior.
    picks = labels[np.linspace(0, len(labels) - 1, min(ALPHABET_STYLES, len(labels))).round().astype(int)]
    sheet = draw_in_styles(
        model,
        originals[np.searchsorted(labels, picks)],
        [(seed, int(c)) for c in picks],
        torch.arange(NUM_CLASSES),
        drawing,
    )
    plots.character_sheet(
        sheet[:, 0].numpy(),
        list(CHARSET),
        [f"style of a test {CHARSET[c]}" for c in picks],
        os.path.join(staging, "alphabets.png"),
        "Generated alphabets: each row decodes every character in the style of one test image",
    )
    if "generation" in report:
        generation = report["generation"]
        plots.generation_quality(
            generation["real_accuracy"],
            generation["generated_accuracy"],
            generation["variety"],
            os.path.join(staging, GENERATION_PLOT),
        )
    with open(os.path.join(staging, "report.md"), "w") as f:
        f.write(_markdown(report))


def _markdown(report: dict) -> str:
    per_source = "\n".join(
        f"| {os.path.basename(s)} | {v['images']:,} | {v['accuracy']:.2%} |" for s, v in report["by_source"].items()
    )
    worst = sorted(report["per_class_accuracy"].items(), key=lambda kv: kv[1])[:5]
    loss = report["loss"]
    return f"""# Evaluation of {os.path.basename(report["model"])} on the {report["split"]} split

Model: `{report["model"]}` {report["model_metadata"] or ""}
Data: {report["images"]:,} images ({"bundled sample" if report["data"]["bundled_sample"] else "given sources"}), seed {report["seed"]}.

| figure | value |
|---|---|
| classification accuracy | {report["accuracy"]:.2%} |
| mean per-class accuracy | {report["mean_per_class_accuracy"]:.2%} |
| reconstruction accuracy | {report["recon_accuracy"]:.2%} |
| loss terms per image (cat, recon, kl) | {loss["cat"]:.4f}, {loss["recon"]:.4f}, {loss["kl"]:.3f} |

| source | images | accuracy |
|---|---|---|
{per_source}

Hardest characters: {", ".join(f"{c} {a:.1%}" for c, a in worst)}.
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

{generation["styles"]} styles (real images of every class of the split, one posterior draw each) x 36 characters
= {generation["generated_images"]:,} generated images, judged by `{generation["judge"]}`.

| figure | value |
|---|---|
| judge accuracy on real characters (mean over classes) | {generation["real_accuracy_mean"]:.2%} |
| judge accuracy on generated characters (mean over classes) | {generation["generated_accuracy_mean"]:.2%} |
| legibility (generated / real) | {generation["legibility"]:.3f}x |
| variety (pairwise distance, generated / real, mean over characters) | {generation["variety_mean"]:.3f}x |

![judge accuracy and variety per character]({GENERATION_PLOT})
"""


def summary(report: dict) -> str:
    """The command's lines for a report: the headline figures, per source, and with a judge the
    generated characters'."""
    lines = [
        f"{report['images']:,} {report['split']} images: accuracy {report['accuracy']:.2%}, mean per-class accuracy "
        f"{report['mean_per_class_accuracy']:.2%}, reconstruction accuracy {report['recon_accuracy']:.2%}"
    ]
    lines += [
        f"  {f['images']:>7,} images  accuracy {f['accuracy']:.2%}  {source}"
        for source, f in report["by_source"].items()
    ]
    if "generation" in report:
        g = report["generation"]
        lines.append(
            f"generated characters: judge accuracy {g['generated_accuracy_mean']:.2%} (real {g['real_accuracy_mean']:.2%}), "
            f"legibility {g['legibility']:.3f}x, variety {g['variety_mean']:.3f}x"
        )
    return "\n".join(lines)
