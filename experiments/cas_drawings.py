"""CAS of drawing choices on one trained model: the runs behind the table of what was tried (in
docs/results/experiment-log.md) to raise the Classification Accuracy Score (`handvae.score.cas`); and what the real training images
themselves give as a "generated" set, the yardstick for the augmentation gain.

Run (from the repo root, venv active; about 7 minutes per variant and seed on a 2-core machine):

    python experiments/cas_drawings.py --model runs/recipe-handvae/model.pt --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --variants default sharp3 sharp2
    python experiments/cas_drawings.py --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --variants copies copies-affine copies-elastic --seeds 0 1 2 3

Each variant draws 2,000 random styles of the real training split x 36 characters (the experiment log's
`handvae generate --split train --num-styles 2000`, drawn in this process) and trains the reference
classifier (`handvae.score.cas.REFERENCE`, with each of --seeds: by default `REFERENCE_SEEDS`, as
`handvae score`; the experiment log's rows were measured with `--seeds 0`) on the generated characters and
on real + generated; the classifier trained on the real split alone is trained once per seed. All
are tested on the real test split.
"""

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch
from torchvision.transforms import v2

from handvae.formats.model_file import load_model_and_metadata
from handvae.labels import NUM_CLASSES
from handvae.model.augment import Augment, augment
from handvae.model.drawing import Drawing, draw_in_styles
from handvae.score.cas import REFERENCE, REFERENCE_SEEDS, summarize, train_and_test, training_sets

STYLES = 2000
CHUNK = 500  # styles per model call: bounded memory; each style's noise has its own key, so the same draws
VARIANTS = {
    "default": {},
    "sharp3": {"sharpness": 3.0},
    "sharp2": {"sharpness": 2.0},
    "sharp2-random2": {"sharpness": 2.0, "randomness": 2.0},
    "sharp2-jitter": {"sharpness": 2.0, "jitter": Augment(max_rotation=12, max_scale=0.12)},
}
"""Changes from the model's own drawing: sharpness; randomness (the posterior's spread); jitter
(style images rotated and scaled before they are encoded). Each character drawn only in styles of
its own class is `handvae generate`'s own-class pairing: measure it with `handvae score`."""
AFFINE = v2.RandomAffine(degrees=12, translate=(0.06, 0.06), scale=(0.88, 1.12), shear=10)
REAL_COPIES = {
    "copies": None,
    "copies-affine": AFFINE,
    "copies-elastic": v2.Compose([v2.ElasticTransform(alpha=34.0, sigma=4.0), AFFINE]),
}
"""No model: 2,000 real training images of each class drawn with replacement (as many as
`handvae generate --split train --num-styles 2000` draws of each), as they are or each moved by
its own random map: an affine one (rotation, shift, scale and shear, as handwriting classifiers
are usually augmented) or an elastic distortion then an affine one (Simard et al., ICDAR 2003).
What a generator whose drawings were the training images, or their augmentations, would score."""


def draw(model, drawing: Drawing, train: tuple[torch.Tensor, torch.Tensor], seed: int, randomness=1.0, jitter=None):
    """(images, labels) of one variant (every-style), from the seed alone."""
    images, labels = train
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(labels), generator=generator)[:STYLES]
    styles = images[pick]
    if jitter:
        torch.manual_seed(seed)
        styles = augment(styles.unsqueeze(1).float() / 255, jitter).squeeze(1).mul(255).round().to(torch.uint8)
    keys = [(seed, int(i)) for i in pick]
    drawn = torch.cat(
        [
            draw_in_styles(
                model, styles[s : s + CHUNK], keys[s : s + CHUNK], torch.arange(NUM_CLASSES), drawing, 1, randomness
            )
            for s in range(0, STYLES, CHUNK)
        ]
    )
    return drawn[:, 0].flatten(0, 1), torch.arange(NUM_CLASSES).repeat(STYLES)


def real_copies(train: tuple[torch.Tensor, torch.Tensor], seed: int, transform=None):
    """(images, labels): STYLES real training images of each class, drawn with replacement, each
    passed through `transform` (torch's global RNG seeded with `seed`) if one is given."""
    images, labels = train
    generator = torch.Generator().manual_seed(seed)
    members = [torch.nonzero(labels == c).squeeze(1) for c in range(NUM_CLASSES)]
    pick = torch.cat([m[torch.randint(len(m), (STYLES,), generator=generator)] for m in members])
    copies = images[pick]
    if transform is not None:
        torch.manual_seed(seed)
        copies = torch.stack([transform(image[None])[0] for image in copies])
    return copies, labels[pick]


def train_and_test_on_one_core(args):
    """`train_and_test(*args)` with one thread: two classifiers at once, one core each."""
    torch.set_num_threads(1)
    return train_and_test(*args)


def real_splits(letters_csv: str, mnist_dir: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) of the real train and test splits, read with Ray Data, Ray shut down after."""
    import ray

    from handvae.data.sources import DataSources, read_split, to_tensors
    from handvae.runtime import init_ray

    init_ray()
    sources = DataSources(letters_csv=letters_csv, mnist_dir=mnist_dir)
    real = {split: to_tensors(read_split(sources, split)) for split in ("train", "test")}
    ray.shutdown()
    return real


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="the model file (for every variant but the real copies)")
    p.add_argument("--mnist-dir", required=True)
    p.add_argument("--letters-csv", required=True)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *REAL_COPIES])
    p.add_argument("--seed", type=int, default=0, help="seed of the styles and draws")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=list(REFERENCE_SEEDS), help="seeds of the reference classifier"
    )
    p.add_argument("--out", help="also write the figures as JSON here")
    a = p.parse_args()
    drawn = sorted(set(a.variants) - set(REAL_COPIES))
    if drawn and not a.model:
        p.error("--model is needed for the variants " + ", ".join(drawn))

    real = real_splits(a.letters_csv, a.mnist_dir)
    if drawn:
        model, metadata = load_model_and_metadata(a.model)
        base = Drawing.from_metadata(metadata)

    figures, real_accuracy = {}, None
    with ProcessPoolExecutor(2) as pool:
        for name in a.variants:
            if name in REAL_COPIES:
                generated = real_copies(real["train"], a.seed, REAL_COPIES[name])
            else:
                options = dict(VARIANTS[name])
                drawing = replace(base, sharpness=options.pop("sharpness", base.sharpness))
                generated = draw(model, drawing, real["train"], a.seed, **options)
            sets = training_sets(real["train"], generated)
            names = ["generated", "real+generated"] + (["real"] if real_accuracy is None else [])
            jobs = [(sets[n], real["test"], replace(REFERENCE, seed=seed)) for n in names for seed in a.seeds]
            results = list(pool.map(train_and_test_on_one_core, jobs))
            accuracy = {n: results[i * len(a.seeds) : (i + 1) * len(a.seeds)] for i, n in enumerate(names)}
            real_accuracy = accuracy.setdefault("real", real_accuracy)
            score = summarize(accuracy, tuple(a.seeds))
            figures[name] = {
                k: score[k] for k in ("cas", "cas_over_real", "augmentation_gain", "augmentation_gain_letters")
            } | {part: score["trained_on"]["generated"][part] for part in ("digits", "letters")}
            f = figures[name]
            print(
                f"{name:>15}: CAS {f['cas']:.2%} = {f['cas_over_real']:.3f}x of real (digits {f['digits']:.1%}, letters {f['letters']:.1%}); "
                f"real + generated {100 * f['augmentation_gain']:+.2f} points (letters {100 * f['augmentation_gain_letters']:+.2f})",
                flush=True,
            )
    if a.out:
        with open(a.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
