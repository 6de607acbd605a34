"""Novelty of generated data sets with the ink rendering taken out: `handvae score`'s novelty
(`handvae.score.novelty`) on images binarised at half intensity, generated and real alike, beside
the figure as drawn. Pixel distance also measures ink: crisp strokes lie farther from MNIST's grey
edges than the same shapes drawn soft; binarised, only the shapes count.

Run (from the repo root, venv active; about a minute a data set on 2 cores):

    python experiments/novelty_shapes.py --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" \
        runs/recipe-handvae/generated runs/recipe-handvae/blend

Each data set is read on every 4th row (as its card's novelty: 18,000 of 72,000 rows).
"""

import argparse

import torch

from handvae.data import folders
from handvae.data.sources import DataSources, keyed_tensors, read_split, to_tensors
from handvae.generate.reports import read_rows
from handvae.runtime import init_ray
from handvae.score.novelty import measure_novelty


def binarised(images: torch.Tensor) -> torch.Tensor:
    return (images >= 128).to(torch.uint8) * 255


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("datasets", nargs="+", help="folders written by `handvae generate` from the real data's train split")
    p.add_argument("--mnist-dir", required=True)
    p.add_argument("--letters-csv", required=True)
    p.add_argument("--stride", type=int, default=4, help="read every n-th generated row")
    a = p.parse_args()
    init_ray()
    real = DataSources(letters_csv=a.letters_csv, mnist_dir=a.mnist_dir)
    train, test = keyed_tensors(read_split(real, "train")), to_tensors(read_split(real, "test"))
    for dataset in a.datasets:
        plan = folders.plan_folder(dataset)
        images, labels, keys = read_rows(sorted({plan.path(unit.file) for unit in plan.units}), a.stride)
        for how, ink in (("as drawn", lambda x: x), ("binarised", binarised)):
            figures = measure_novelty((ink(images), labels, keys), (ink(train[0]), *train[1:]), (ink(test[0]), test[1]))
            print(
                f"{dataset} {how}: "
                + "; ".join(
                    f"{part} {f.ratio:.2f}x, {f.nearest_is_own_sample:.1%} nearest their own sample, spread {f.spread:.2f}x"
                    for part, f in figures.items()
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
