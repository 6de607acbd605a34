"""Legibility and variety of one trained model under several drawings (sharpness, class shift).

    python experiments/drawing_sweep.py runs/NAME/model.pt --judge runs/judge.pt \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --mnist-dir ../shared/data/mnist \
        --sharpness 1,3,5,6

Runs `handvae.model.judge.assess_generation` (what `handvae evaluate --judge` runs) in this process, on
--styles-per-class random test images of each class (seeded), for every sharpness, with and without
the class shift. A model file without class latent means (older files) gets them computed here
from the training split. Reads the data with the readers directly (no Ray).
"""

import json

import numpy as np
import torch
import typer

from handvae.data import kaggle_csv, mnist_idx
from handvae.formats.model_file import load_judge, load_model
from handvae.labels import NUM_CLASSES
from handvae.model.drawing import Drawing
from handvae.model.judge import assess_generation, judge_predictions, per_class_accuracy
from handvae.model.steps import class_latent_means


def real_split(letters_csv: str, mnist_dir: str, split: str, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    plan = kaggle_csv.plan_csv(letters_csv)
    chunks = [kaggle_csv.read_chunk(plan, chunk, split_seed, 0.2) for chunk in plan.chunks]
    letters = {k: np.concatenate([c[k] for c in chunks]) for k in ("image", "label", "split")}
    keep = letters["split"] == split
    mnist = mnist_idx.read_mnist_split(mnist_dir, split)
    images = np.concatenate([mnist["image"], letters["image"][keep]])
    labels = np.concatenate([mnist["label"], letters["label"][keep]]).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def main(
    model_path: str,
    judge_path: str = typer.Option(..., "--judge"),
    letters_csv: str = typer.Option(...),
    mnist_dir: str = typer.Option(...),
    sharpness: str = typer.Option("1,3,5", help="Comma-separated sharpness values."),
    styles_per_class: int = 10,
    split_seed: int = 0,
    seed: int = 0,
    out: str | None = typer.Option(None, help="Also write the figures as JSON lines here."),
):
    test_images, test_labels = real_split(letters_csv, mnist_dir, "test", split_seed)
    model = load_model(model_path)
    if not model.class_latent_means.any():
        model.class_latent_means.copy_(
            class_latent_means(model, *real_split(letters_csv, mnist_dir, "train", split_seed))
        )
    judge, _ = load_judge(judge_path)
    real_accuracy = per_class_accuracy(judge_predictions(judge, test_images), test_labels)
    generator = torch.Generator().manual_seed(seed)
    by_class = {}
    for c in range(NUM_CLASSES):
        mine = test_images[test_labels == c]
        by_class[c] = mine[torch.randperm(len(mine), generator=generator)[: styles_per_class * NUM_CLASSES]]
    rows = []
    for value in (float(v) for v in sharpness.split(",")):
        for shift in (False, True):
            figures = assess_generation(
                model,
                judge,
                by_class,
                real_accuracy,
                styles_per_class,
                seed,
                Drawing(sharpness=value, class_shift=shift),
            )
            rows.append(
                {
                    "sharpness": value,
                    "class_shift": shift,
                    "legibility": figures["legibility"],
                    "variety": figures["variety_mean"],
                }
            )
            print(
                f"sharpness {value:g}, class shift {'on ' if shift else 'off'}: legibility {figures['legibility']:.3f}x, variety {figures['variety_mean']:.3f}x",
                flush=True,
            )
    if out:
        with open(out, "w") as f:
            f.writelines(json.dumps({"model": model_path, **row}) + "\n" for row in rows)


if __name__ == "__main__":
    typer.run(main)
