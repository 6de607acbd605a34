"""The augmentation gain of a generated data set when fewer of its characters are added to the real
ones: does a data set that costs points at `handvae generate --num-styles 2000` (2,000 of each
character against ~170 real letters) add to real data in a smaller share?

    python experiments/generator_sweep.py export --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --out sweep/real.npz
    python experiments/augment_share.py --arrays sweep/real.npz --dataset runs/recipe-handvae/blend \
        --per-class 170 2000 --real

Each share is N rows of each character, evenly spaced in file order (so from as many style samples
as N allows), trained with the real training split by `handvae score`'s reference classifier at
each seed, one process per training (one thread each, as `handvae score` runs them); `--real`
trains the real split alone too, the baseline, else the gains are left out. `--soft-labels W`: the
generated rows are learnt from the data set's `label_probs` (the model's classifier's probabilities,
teacher soft labels), weighted W against their labels. A research script: its figures are screens for
`handvae score`.
"""

import argparse
import json
import multiprocessing
import os
import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from handvae.generate.reports import read_rows
from handvae.labels import NUM_CLASSES
from handvae.score.cas import REFERENCE, class_means, train_and_test


def spread_per_class(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of `per_class` rows of each class, evenly spaced over its rows in file order (a style
    sample's draws are next to each other: the first rows would be the draws of a few samples)."""
    keep = []
    for c in range(NUM_CLASSES):
        members = torch.nonzero(labels == c).flatten()
        keep.append(members[torch.linspace(0, len(members) - 1, min(per_class, len(members))).long()])
    return torch.sort(torch.cat(keep)).values


def _train(job):
    name, seed, train, test = job
    torch.set_num_threads(1)
    accuracy = train_and_test(train, test, replace(REFERENCE, seed=seed))
    return name, seed, class_means(accuracy)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arrays", required=True, help="real splits exported by generator_sweep.py export")
    p.add_argument("--dataset", required=True, help="a data set folder written by handvae generate, or a .npz")
    p.add_argument("--per-class", nargs="+", type=int, required=True, help="generated rows of each character")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--real", action="store_true", help="also train on the real split alone (the baseline)")
    p.add_argument("--processes", type=int, default=3)
    p.add_argument(
        "--soft-labels",
        type=float,
        metavar="W",
        help="learn the generated rows' targets as W x label_probs (the data set folder's teacher soft labels) "
        "+ (1 - W) x their labels, one-hot",
    )
    args = p.parse_args()

    arrays = np.load(args.arrays)
    real = (torch.from_numpy(arrays["train_images"]), torch.from_numpy(arrays["train_labels"].astype(np.int64)))
    test = (torch.from_numpy(arrays["test_images"]), torch.from_numpy(arrays["test_labels"].astype(np.int64)))
    if args.soft_labels is not None and args.dataset.endswith(".npz"):
        p.error("--soft-labels reads a data set folder's label_probs column")
    if args.dataset.endswith(".npz"):  # a candidate of generator_sweep.py --drawn
        drawn = np.load(args.dataset)
        images, labels = torch.from_numpy(drawn["images"]), torch.from_numpy(drawn["labels"].astype(np.int64))
    else:
        with open(os.path.join(args.dataset, "manifest.json")) as f:
            files = [os.path.join(args.dataset, name) for name in json.load(f)["files"]]
        images, labels, _ = read_rows(files, 1)
    if args.soft_labels is not None:  # the generated rows' label_probs; the real rows' labels, one-hot
        tables = [pq.read_table(path, columns=["label_probs"]) for path in files]  # read_rows's order
        probs = pa.concat_tables(tables).column(0).combine_chunks().flatten()
        soft = torch.tensor(probs.to_numpy()).view(len(labels), NUM_CLASSES)
        soft = args.soft_labels * soft + (1 - args.soft_labels) * torch.nn.functional.one_hot(labels, NUM_CLASSES)
    jobs = [("real", s, real, test) for s in args.seeds] if args.real else []
    for n in args.per_class:
        keep = spread_per_class(labels, n)
        both = (torch.cat([real[0], images[keep]]), torch.cat([real[1], labels[keep]]))
        if args.soft_labels is not None:
            both = (*both, torch.cat([torch.nn.functional.one_hot(real[1], NUM_CLASSES).float(), soft[keep]]))
        jobs += [(f"real+{n}", s, both, test) for s in args.seeds]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        results = pool.map(_train, jobs)
    figures: dict[str, list[dict]] = {}
    for name, seed, means in results:
        figures.setdefault(name, []).append(means)
        print(f"{name} seed {seed}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in means.items()))

    def mean(name, part):
        return 100 * float(np.mean([m[part] for m in figures[name]]))

    for name in figures:
        line = f"{name}: mean per class {mean(name, 'mean_per_class_accuracy'):.2f}"
        if "real" in figures and name != "real":
            line += ", gain " + ", ".join(
                f"{part} {mean(name, key) - mean('real', key):+.2f}"
                for part, key in (("all", "mean_per_class_accuracy"), ("digits", "digits"), ("letters", "letters"))
            )
        print(line)
    print(f"{len(jobs)} trainings in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
