"""The report's PNG figures, drawn with matplotlib's object API (no pyplot state, no display).

Every function takes plain arrays and a path, and writes one PNG.
"""

import numpy as np
from matplotlib.figure import Figure

from handvae.labels import CHARSET

_DPI = 100


def pixel_accuracy_map(accuracy: np.ndarray, path: str) -> None:
    """The seed's per-pixel reconstruction accuracy, as a heat map with a colour bar."""
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    image = ax.imshow(accuracy, cmap="viridis", vmin=float(np.min(accuracy)), vmax=1.0)
    fig.colorbar(image, ax=ax, label="reconstruction accuracy")
    ax.set_title(f"Reconstruction accuracy per pixel (mean {np.mean(accuracy):.2%})")
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")


def per_class_accuracy(accuracy: dict[str, float], images: dict[str, int], path: str) -> None:
    """One bar per character, labelled with it; the number of images under each bar."""
    chars = [c for c in CHARSET if c in accuracy]
    values = [accuracy[c] for c in chars]
    fig = Figure(figsize=(max(6.0, 0.32 * len(chars) + 1.5), 4.0))
    ax = fig.subplots()
    colours = ["tab:blue" if c.isdigit() else "tab:orange" for c in chars]
    ax.bar(range(len(chars)), values, color=colours)
    ax.set_xticks(range(len(chars)), [f"{c}\n{images[c]}" for c in chars], fontsize=7)
    ax.set_ylim(min(0.5, min(values) - 0.05), 1.0)
    ax.axhline(float(np.mean(values)), color="grey", linestyle="--", linewidth=1, label=f"mean {np.mean(values):.2%}")
    ax.set_ylabel("accuracy")
    ax.set_title("Classification accuracy per character (blue digits, orange letters; images under each)")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")


def confusion_matrix(confusion: np.ndarray, path: str) -> None:
    """Rows: true character; columns: predicted; each row scaled to its share, counts off the diagonal."""
    confusion = np.asarray(confusion, dtype=np.float64)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(10, 9))
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true character's images", fraction=0.046)
    ticks = range(len(CHARSET))
    ax.set_xticks(ticks, list(CHARSET), fontsize=7)
    ax.set_yticks(ticks, list(CHARSET), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for true, predicted in zip(*np.nonzero(confusion)):
        if true != predicted:
            ax.text(
                predicted, true, int(confusion[true, predicted]), ha="center", va="center", fontsize=5, color="crimson"
            )
    ax.set_title("Confusion matrix (mistakes counted in red)")
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")


def reconstructions(
    originals: np.ndarray, recons: np.ndarray, labels: np.ndarray, predicted: np.ndarray, path: str, per_row: int = 18
) -> None:
    """Originals over their reconstructions, titled with the true and the predicted character."""
    count = len(originals)
    bands = -(-count // per_row)
    fig = Figure(figsize=(per_row * 0.75, bands * 1.9))
    axes = fig.subplots(2 * bands, per_row, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(count):
        band, column = divmod(i, per_row)
        top, bottom = axes[2 * band, column], axes[2 * band + 1, column]
        top.imshow(originals[i], cmap="gray", vmin=0, vmax=255)
        top.set_title(CHARSET[labels[i]], fontsize=8)
        bottom.imshow(recons[i], cmap="gray", vmin=0, vmax=255)
        wrong = predicted[i] != labels[i]
        bottom.set_title(CHARSET[predicted[i]], fontsize=8, color="crimson" if wrong else "black")
    fig.suptitle("Originals (true character) over reconstructions (predicted character; red if wrong)", fontsize=9)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")


def character_sheet(images: np.ndarray, chars: list[str], row_labels: list[str], path: str, title: str) -> None:
    """A styles x characters grid of uint8 images (styles, chars, S, S): one row per style. Drawn as
    one mosaic image: one axes instead of one per cell (432 for generation's sheet: 4.3 s to 0.5 s)."""
    rows, columns, height, width = images.shape
    gap = 2
    mosaic = np.full(
        (rows * (height + gap) - gap, columns * (width + gap) - gap), 96, dtype=np.uint8
    )  # grey between cells
    for r in range(rows):
        for c in range(columns):
            mosaic[r * (height + gap) : r * (height + gap) + height, c * (width + gap) : c * (width + gap) + width] = (
                images[r, c]
            )
    scale = 0.42
    fig = Figure(figsize=(columns * scale + 1.2, rows * scale + 0.8))
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks(
        [c * (width + gap) + width / 2 for c in range(columns)], [ch if ch != " " else "␣" for ch in chars], fontsize=8
    )
    ax.xaxis.tick_top()
    ax.set_yticks([r * (height + gap) + height / 2 for r in range(rows)], row_labels, fontsize=6)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9, pad=20)  # clear of the characters on top
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")


def generation_quality(
    real: dict[str, float], generated: dict[str, float], variety: dict[str, float], path: str
) -> None:
    """Per character: the judge's accuracy on real and on generated images, and the variety ratio."""
    chars = [c for c in CHARSET if c in real and c in generated]
    positions = np.arange(len(chars))
    fig = Figure(figsize=(max(6.0, 0.32 * len(chars) + 1.5), 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.bar(positions - 0.2, [real[c] for c in chars], width=0.4, label="real", color="tab:grey")
    top.bar(positions + 0.2, [generated[c] for c in chars], width=0.4, label="generated", color="tab:green")
    top.set_ylabel("judge accuracy")
    top.set_ylim(0, 1.0)
    top.legend(loc="lower right")
    top.set_title("A separate classifier's accuracy on real and generated characters")
    bottom.bar(positions, [variety.get(c, np.nan) for c in chars], color="tab:purple")
    bottom.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    bottom.set_ylabel("variety (generated / real)")
    bottom.set_xticks(positions, chars, fontsize=8)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")


def classifier_comparison(per_class: dict[str, dict[str, float]], path: str) -> None:
    """Per character: the accuracy on real test images of classifiers trained on different data
    (one bar colour per training set), with each one's mean over characters in the legend."""
    names = list(per_class)
    chars = [c for c in CHARSET if all(c in per_class[n] for n in names)]
    positions = np.arange(len(chars))
    width = 0.8 / len(names)
    fig = Figure(figsize=(max(6.0, 0.38 * len(chars) + 1.5), 4.0))
    ax = fig.subplots()
    for i, name in enumerate(names):
        values = [per_class[name][c] for c in chars]
        ax.bar(
            positions + (i - (len(names) - 1) / 2) * width,
            values,
            width=width,
            label=f"{name} (mean {np.mean(values):.2%})",
        )
    ax.set_xticks(positions, chars, fontsize=8)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("accuracy on real test images")
    ax.set_title("The reference classifier trained on each set, tested on real handwriting")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
