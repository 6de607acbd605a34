"""Legibility and variety of generated characters, judged by a separately trained classifier.

    python benchmarks/legibility.py runs/NAME/model.pt --judge runs/judge.pt \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --mnist-dir ../shared/data/mnist

The judge (handvae.judge: a small CNN, not the VAE's encoder) is trained on the real training
images only (MNIST train + the letters' train split), class-balanced, with blur and shift
augmentation, each image scaled to a peak of 1; it is saved to --judge and reused when that file
exists. Then, as in the seed's last cell: styles are posterior samples of real test characters
(--styles-per-class of each class, chosen by the seed), each decoded as all 36 characters.

Prints the judge's accuracy on real test characters and on generated ones (per class, and the mean
over classes), legibility = generated / real, and variety = per character, the mean pairwise
distance between its generated images (from different styles) over that of as many real ones.
"""

import json
from dataclasses import asdict
from typing import Optional

import numpy as np
import torch
import typer

from handvae.checkpoint import load_model
from handvae.data import kaggle_csv, mnist_idx
from handvae.judge import (
    JudgeTraining, judge_predictions, load_judge, per_class_accuracy, save_judge, train_judge, variety_ratio,
)
from handvae.labels import CHARSET, NUM_CLASSES
from handvae.styles import draw, encode_styles


def real_data(letters_csv: str, mnist_dir: str, split: str, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    letters_csv: str = typer.Option(...),
    mnist_dir: str = typer.Option(...),
    judge_path: str = typer.Option(..., "--judge", help="Judge file: reused if it exists, else trained and saved here."),
    split_seed: int = 0,
    styles_per_class: int = typer.Option(10, help="Test characters of each class whose styles are drawn."),
    randomness: float = typer.Option(1.0, help="Posterior spread of each style (1: the seed's sample)."),
    seed: int = 0,
    out: Optional[str] = typer.Option(None, help="Also write the figures as JSON here."),
):
    test_images, test_labels = real_data(letters_csv, mnist_dir, "test", split_seed)
    try:
        judge, judge_meta = load_judge(judge_path)
        print(f"judge: {judge_path} ({judge_meta})")
    except Exception:
        train_images, train_labels = real_data(letters_csv, mnist_dir, "train", split_seed)
        config = JudgeTraining()
        print(f"training the judge on {len(train_labels):,} real training images: {config}")
        judge = train_judge(train_images, train_labels, config)
        judge_meta = {"trained_on": "MNIST train + letters train split", "split_seed": split_seed, "training": asdict(config)}
        save_judge(judge_path, judge, judge_meta)

    real_predicted = judge_predictions(judge, test_images)
    real_per_class = per_class_accuracy(real_predicted, test_labels)

    # Styles: styles_per_class random test characters of each class, each decoded as every character.
    generator = torch.Generator().manual_seed(seed)
    picks = torch.cat([torch.nonzero(test_labels == c).flatten()[torch.randperm(int((test_labels == c).sum()), generator=generator)[:styles_per_class]] for c in range(NUM_CLASSES)])
    model = load_model(model_path)
    styles = encode_styles(model, test_images[picks], [(seed, int(i)) for i in picks], randomness=randomness)[:, 0]
    chars = torch.arange(NUM_CLASSES).repeat(len(picks))
    generated = draw(model, styles.repeat_interleave(NUM_CLASSES, dim=0), chars)
    generated_per_class = per_class_accuracy(judge_predictions(judge, generated), chars)

    variety = variety_ratio(generated, chars, test_images, test_labels, per_class=len(picks), seed=seed)
    real_mean = float(np.mean(list(real_per_class.values())))
    generated_mean = float(np.mean(list(generated_per_class.values())))
    print(f"\n{len(picks)} styles x {NUM_CLASSES} characters = {len(chars):,} generated; {len(test_labels):,} real test characters")
    print(f"{'char':>4} {'real acc':>9} {'gen acc':>8} {'variety':>8}")
    for c in range(NUM_CLASSES):
        print(f"{CHARSET[c]:>4} {real_per_class[c]:9.1%} {generated_per_class[c]:8.1%} {variety.get(c, float('nan')):8.2f}")
    legibility = generated_mean / real_mean
    variety_mean = float(np.mean(list(variety.values())))
    print(f"\njudge accuracy, mean over classes: real {real_mean:.2%}, generated {generated_mean:.2%} "
          f"(share of generated characters recognised as the one asked for: {float((judge_predictions(judge, generated) == chars).float().mean()):.2%})")
    print(f"legibility (generated / real): {legibility:.3f}x; variety (generated / real pairwise distance): {variety_mean:.3f}x")
    if out:
        with open(out, "w") as f:
            json.dump({
                "model": model_path, "judge": judge_path, "judge_metadata": judge_meta, "styles": len(picks),
                "real_accuracy": real_mean, "generated_accuracy": generated_mean, "legibility": legibility, "variety": variety_mean,
                "per_class": {CHARSET[c]: {"real": real_per_class[c], "generated": generated_per_class[c], "variety": variety.get(c)} for c in range(NUM_CLASSES)},
            }, f, indent=2)


if __name__ == "__main__":
    typer.run(main)
