"""What fresh real characters add under the CAS measure: the ceiling of the augmentation gain.

A generator trained on the real training split can at best draw characters as good as new real
ones. What new real characters would add to the reference classifier (`handvae.score.cas.REFERENCE`,
with each of --seeds) is read off its learning curve: it is trained on the real training split with
the letters (or the digits) of each class cut to a fraction, a seeded subset (nested: each fraction
holds the smaller ones' images), and on the whole split, and tested on the real test split each time.
The whole split's accuracy less a fraction's is the augmentation gain that a perfect generator
adding (1/fraction - 1) times that fraction's images of each class would give it.

Run (from the repo root, venv active; about 5 minutes a training, two at once on a 2-core machine:
39 minutes for the command below):

    python experiments/cas_learning_curve.py --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --letters 0.125 0.25 0.5 --digits 0.75

It ends with the gain of the mean accuracy per class per doubling of the letters' images between
the fractions, and with what 2,000 new real images of each letter (the size of the default recipe's data
set, `handvae generate --split train --num-styles 2000`) would add if the curve went on flattening
as its last two steps did (`ceiling`): what a generator whose letters were as good as new real ones
would reach.
"""

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch
from cas_drawings import real_splits, train_and_test_on_one_core  # the experiment beside this one

from handvae.labels import NUM_CLASSES, NUM_DIGITS
from handvae.score.cas import REFERENCE, REFERENCE_SEEDS, class_means

DRAWINGS_PER_CLASS = (
    2000  # `handvae generate --split train --num-styles 2000`: the default recipe's data set (docs/results/recipes.md)
)


def subset(train: tuple[torch.Tensor, torch.Tensor], letters: float, digits: float, seed: int = 0):
    """The training images with each letter's (digit's) images cut to the fraction `letters`
    (`digits`) of them, at least one: the first of one seeded order per class, so that a smaller
    fraction's images are among a larger one's."""
    images, labels = train
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(NUM_CLASSES):
        members = torch.nonzero(labels == c).squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        fraction = digits if c < NUM_DIGITS else letters
        keep.append(members[: max(1, round(fraction * len(members)))])
    keep = torch.cat(keep)
    return images[keep], labels[keep]


def ceiling(curve: list[tuple[float, float]], letter_counts: list[int]) -> dict:
    """What DRAWINGS_PER_CLASS new real images of each letter would add to the mean accuracy per
    class, from `curve`, (fraction of each letter's images, mean accuracy per class) by rising
    fraction and ending at (1.0, the whole split's). Learning curves flatten: each further doubling
    is taken to add the last measured step's gain per doubling times the ratio between the last
    two steps' (per doubling of the distance between them; the last step's gain itself where the
    steps do not shrink), summed continuously over the doublings that the new images make of each
    letter's `letter_counts`, on average."""
    steps = [(high - low) / math.log2(g / f) for (f, low), (g, high) in zip(curve, curve[1:])]
    result = {"per_doubling": steps, "ratio": None, "doublings": None, "gain": None}
    if len(steps) < 2 or min(steps[-2:]) <= 0:
        return result
    middles = [math.log2(f * g) / 2 for (f, _), (g, _) in zip(curve, curve[1:])]
    ratio = (steps[-1] / steps[-2]) ** (1 / (middles[-1] - middles[-2]))
    doublings = sum(math.log2(1 + DRAWINGS_PER_CLASS / n) for n in letter_counts) / len(letter_counts)
    gain = steps[-1] * doublings if ratio >= 1 else steps[-1] * (ratio**doublings - 1) / math.log(ratio)
    return result | {"ratio": ratio, "doublings": doublings, "gain": gain}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist-dir", required=True)
    p.add_argument("--letters-csv", required=True)
    p.add_argument(
        "--letters",
        type=float,
        nargs="*",
        default=[0.125, 0.25, 0.5],
        help="fractions of each letter's images, digits whole",
    )
    p.add_argument(
        "--digits", type=float, nargs="*", default=[0.75], help="fractions of each digit's images, letters whole"
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=list(REFERENCE_SEEDS), help="seeds of the reference classifier"
    )
    p.add_argument("--out", help="also write the figures as JSON here")
    a = p.parse_args()
    for fraction in a.letters + a.digits:
        if not 0 < fraction < 1:
            p.error(f"fractions must be between 0 and 1, got {fraction}")

    real = real_splits(a.letters_csv, a.mnist_dir)
    rows = [(1.0, 1.0)] + [(f, 1.0) for f in sorted(a.letters)] + [(1.0, f) for f in sorted(a.digits)]
    sets = {row: subset(real["train"], *row) for row in rows}
    jobs = [(sets[row], real["test"], replace(REFERENCE, seed=seed)) for row in rows for seed in a.seeds]
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(train_and_test_on_one_core, jobs))
    figures = {}
    for i, row in enumerate(rows):
        by_seed = [class_means(r) for r in results[i * len(a.seeds) : (i + 1) * len(a.seeds)]]
        by_seed = [
            {"all": s["mean_per_class_accuracy"], "digits": s["digits"], "letters": s["letters"]} for s in by_seed
        ]
        figures[row] = {part: sum(s[part] for s in by_seed) / len(by_seed) for part in ("all", "digits", "letters")} | {
            "by_seed": [s["all"] for s in by_seed]
        }

    whole = figures[(1.0, 1.0)]
    print(
        f"{'letters':>8} {'digits':>7} {'images':>7} | mean per class (each seed) | digits | letters | whole split's gain over it"
    )
    for (letters, digits), f in figures.items():
        images = len(sets[(letters, digits)][1])
        each = ", ".join(f"{v:.2%}" for v in f["by_seed"])
        print(
            f"{letters:>8.3f} {digits:>7.3f} {images:>7,} | {f['all']:.2%} ({each}) | {f['digits']:.2%} | {f['letters']:.2%} | {100 * (whole['all'] - f['all']):+.2f} points"
        )

    counts = torch.bincount(real["train"][1], minlength=NUM_CLASSES).tolist()
    curve = [(f, figures[(f, 1.0)]["all"]) for f in sorted(a.letters)] + [(1.0, whole["all"])]
    figures["ceiling"] = ceiling(curve, counts[NUM_DIGITS:])
    for (f, g), step in zip(zip(sorted(a.letters), sorted(a.letters)[1:] + [1.0]), figures["ceiling"]["per_doubling"]):
        print(
            f"letters {f} to {g}: {100 * step:+.2f} points of the mean per class per doubling of each letter's images"
        )
    c = figures["ceiling"]
    if c["gain"] is None:
        print("the curve does not flatten as two rising steps would show: no ceiling from it")
    else:
        print(
            f"{DRAWINGS_PER_CLASS:,} new real images of each letter, {c['doublings']:.2f} doublings on average, each adding {c['ratio']:.2f}x "
            f"the one before (as the last measured): {100 * c['gain']:+.2f} points of the mean per class, what a perfect generator's letters would add"
        )
    if a.out:
        with open(a.out, "w") as f:
            json.dump(
                {k if isinstance(k, str) else f"letters {k[0]} digits {k[1]}": v for k, v in figures.items()},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
