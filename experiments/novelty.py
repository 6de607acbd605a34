"""How new a generated data set's drawings are: each drawing's distance to the real sample whose
style it was drawn in, against the distance between two real samples of one class.

Run (from the repo root, venv active; about 30 s for the default recipe's data set, docs/results/recipes.md, on 2 cores):

    python experiments/novelty.py --dataset runs/recipe-handvae/generated --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv"

For the drawings of a data set written by `handvae generate` from a data split (own-class: each
drawing carries its style sample's `source` and `row`), and the real training split they came
from, per part (digits, letters): the median Euclidean distance (pixels in [0, 1]) from a drawing
to its own style sample and to the nearest other real sample of its class; the median distance
from a real sample to the nearest other one of its class; and the share of drawings whose nearest
real sample of their class is their own style sample. A drawing as new as another writer's
character sits as far from its style sample as real samples sit from each other.
"""

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from handvae.data import folders
from handvae.labels import NUM_CLASSES, NUM_DIGITS


def generated_drawings(folder: str):
    """(images float (N, 784), labels, style sample keys (source, row)) of a local data set folder:
    the files of its committed run, as the readers find and check them (`folders.plan_folder`)."""
    plan = folders.plan_folder(folder)
    files = sorted({unit.file for unit in plan.units})
    table = pa.concat_tables(
        pq.read_table(plan.path(file), columns=["pixels", "label", "source", "row"]) for file in files
    )
    pixels = np.frombuffer(bytearray(b"".join(table["pixels"].to_pylist())), np.uint8).reshape(-1, 784)
    keys = list(zip(table["source"].to_pylist(), table["row"].to_pylist()))
    return torch.from_numpy(pixels).float() / 255, np.asarray(table["label"]), keys


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="a local folder written by handvae generate from a data split")
    p.add_argument("--mnist-dir", required=True)
    p.add_argument("--letters-csv", required=True)
    a = p.parse_args()

    import ray

    from handvae.data.sources import DataSources, read_split
    from handvae.runtime import init_ray

    init_ray()
    real = (
        read_split(DataSources(letters_csv=a.letters_csv, mnist_dir=a.mnist_dir), "train")
        .select_columns(["image", "label", "source", "row"])
        .take_batch(10**9)
    )
    ray.shutdown()
    real_images = torch.from_numpy(real["image"].reshape(-1, 784)).float() / 255
    index = {key: i for i, key in enumerate(zip(real["source"].tolist(), real["row"].tolist()))}
    drawings, labels, keys = generated_drawings(a.dataset)
    missing = [key for key in keys if key not in index]
    if missing:
        raise SystemExit(
            f"{len(missing):,} drawings' style samples are not in the real training split, e.g. {missing[0]}: give the data flags it was drawn from"
        )
    sample = np.array([index[key] for key in keys])

    figures = {part: {"own": [], "other": [], "real": [], "nearest_is_own": []} for part in ("digits", "letters")}
    for c in range(NUM_CLASSES):
        f = figures["digits" if c < NUM_DIGITS else "letters"]
        members = np.flatnonzero(real["label"] == c)
        drawn = np.flatnonzero(labels == c)
        to_real = torch.cdist(drawings[drawn], real_images[members])
        own = torch.from_numpy(sample[drawn][:, None] == members[None, :])
        f["own"].append(to_real[own])
        f["other"].append(to_real.masked_fill(own, float("inf")).min(1).values)
        f["nearest_is_own"].append(own[torch.arange(len(drawn)), to_real.argmin(1)])
        between = torch.cdist(real_images[members], real_images[members]).fill_diagonal_(float("inf"))
        f["real"].append(between.min(1).values)
    for part, f in figures.items():
        own, other, real_nearest, nearest_is_own = (torch.cat(f[k]) for k in ("own", "other", "real", "nearest_is_own"))
        print(
            f"{part}: {len(own):,} drawings; to their own style sample {own.median():.2f}, to the nearest other real one of their class "
            f"{other.median():.2f}; a real sample to the nearest other one {real_nearest.median():.2f} (medians); "
            f"{nearest_is_own.float().mean():.1%} of drawings nearest their own style sample"
        )


if __name__ == "__main__":
    main()
