"""Quality of a trained model on real data, per source: MNIST test and the held-out letters split.

    handvae train --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" \
        --mnist-dir ../shared/data/mnist --run-name quality-seed
    python benchmarks/quality.py runs/quality-seed/model.pt \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --mnist-dir ../shared/data/mnist

Reads the test splits with the readers (no Ray) and prints classification accuracy on each source,
the mean per-class accuracy over the classes present, and the reconstruction accuracy.
"""

import numpy as np
import torch
import typer

from handvae.checkpoint import load_model
from handvae.data import kaggle_csv, mnist_idx
from handvae.engine import model_inputs
from handvae.engine import EVAL_SUMS, evaluate
from handvae.labels import CHARSET


def letters_test(path: str, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    plan = kaggle_csv.plan_csv(path)
    batches = [kaggle_csv.read_chunk(plan, chunk, split_seed, 0.2) for chunk in plan.chunks]
    images, labels, splits = (np.concatenate([b[k] for b in batches]) for k in ("image", "label", "split"))
    return images[splits == "test"], labels[splits == "test"]


def main(model_path: str, letters_csv: str = typer.Option(...), mnist_dir: str = typer.Option(...), split_seed: int = 0):
    torch.manual_seed(0)
    model = load_model(model_path)
    mnist = mnist_idx.read_mnist_split(mnist_dir, "test")
    sets = {"MNIST test": (mnist["image"], mnist["label"]), "letters test": letters_test(letters_csv, split_seed)}
    all_predictions, all_labels = [], []
    for name, (images, labels) in sets.items():
        x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
        sums = dict(zip(EVAL_SUMS, evaluate(model, x, y).tolist()))
        print(f"{name:>13}: {int(sums['images']):>6} images  accuracy {sums['correct'] / sums['images']:.2%}  "
              f"reconstruction accuracy {sums['recon_correct_pixels'] / sums['pixels']:.2%}")
        with torch.no_grad():
            all_predictions.append(torch.cat([model.encode(model_inputs(x[i : i + 2048], y[i : i + 2048])[0])[2].argmax(1) for i in range(0, len(y), 2048)]))
        all_labels.append(y)
    predictions, labels = torch.cat(all_predictions), torch.cat(all_labels)
    per_class = {CHARSET[c]: (predictions[labels == c] == c).float().mean().item() for c in labels.unique().tolist()}
    print(f"mean per-class accuracy over {len(per_class)} classes: {np.mean(list(per_class.values())):.2%}")
    worst = sorted(per_class.items(), key=lambda kv: kv[1])[:6]
    print("weakest classes: " + ", ".join(f"{c} {a:.0%}" for c, a in worst))


if __name__ == "__main__":
    typer.run(main)
