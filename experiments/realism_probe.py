"""Can a small CNN tell a data set's generated letters from real ones? A two-sample test by
classifier (Lopez-Paz & Oquab, ICLR 2017): the judge's CNN is trained to label real training
letters 0 and generated letters 1, as many of each, then tested on real test-split letters and
generated letters it did not see. 50% balanced accuracy: no difference it can find; near 100%: the
generated letters carry a mark of their own, which a classifier trained mostly on them learns too.
The first row is the control: real training letters against other real training letters.

    python experiments/generator_sweep.py export --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --out sweep/real.npz
    python experiments/realism_probe.py --arrays sweep/real.npz runs/recipe-handvae/generated \
        runs/recipe-handvae/blend

About 1 min a data set on 2 cores. A research script (docs/results/experiment-log.md).
"""

import argparse
import json
import os

import numpy as np
import torch

from handvae.generate.reports import read_rows
from handvae.labels import NUM_DIGITS
from handvae.model.judge import JudgeTraining, judge_predictions, train_judge

PROBE = JudgeTraining(epochs=2, images_per_epoch=25_600, batch_size=128, learning_rate=1e-3, max_shift=2, seed=0)


def balanced_accuracy(train_real, train_fake, test_real, test_fake) -> float:
    images = torch.cat([train_real, train_fake])
    labels = torch.cat([torch.zeros(len(train_real)), torch.ones(len(train_fake))]).long()
    probe = train_judge(images, labels, PROBE, log=lambda line: None)
    real_right = (judge_predictions(probe, test_real) == 0).float().mean()
    fake_right = (judge_predictions(probe, test_fake) == 1).float().mean()
    return float(real_right + fake_right) / 2


def letters_of(dataset: str) -> torch.Tensor:
    with open(os.path.join(dataset, "manifest.json")) as f:
        files = [os.path.join(dataset, name) for name in json.load(f)["files"]]
    images, labels, _ = read_rows(files, 1)
    return images[labels >= NUM_DIGITS]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arrays", required=True, help="real splits exported by generator_sweep.py export")
    p.add_argument("datasets", nargs="+", help="data set folders written by handvae generate")
    args = p.parse_args()
    torch.manual_seed(0)
    arrays = np.load(args.arrays)
    train = torch.from_numpy(arrays["train_images"][arrays["train_labels"] >= NUM_DIGITS])
    test = torch.from_numpy(arrays["test_images"][arrays["test_labels"] >= NUM_DIGITS])
    order = train[torch.randperm(len(train))]
    held = len(order) // 4  # the control's "generated" letters: real training letters, a quarter held out
    control = balanced_accuracy(order[held:][::2], order[held:][1::2], test, order[:held])
    print(f"control (real letters labelled generated): {control:.1%} balanced accuracy")
    for dataset in args.datasets:
        generated = letters_of(dataset)
        picked = generated[torch.randperm(len(generated))[: len(train) + len(test)]]
        accuracy = balanced_accuracy(train, picked[: len(train)], test, picked[len(train) :])
        print(f"{dataset}: {accuracy:.1%} balanced accuracy, real against generated letters")


if __name__ == "__main__":
    main()
