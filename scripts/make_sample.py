"""Build the bundled sample: up to 100 real images per class (80 train, 20 test), all 36 classes.

    python scripts/make_sample.py --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" \
        --mnist-dir ../shared/data/mnist

Digits come from MNIST's own train and test files, letters from the Kaggle CSV's deterministic
split (seed 0). The result is a prepared folder (the layout `handvae prepare` writes) inside the
package, so the default run reads it with the same code as any prepared data.
"""

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import typer

from handvae.data.records import SPLITS, select
from handvae.data.sources import DataSources, read_split, sample_dir
from handvae.formats.dataset_folder import MANIFEST, SUCCESS_MARKER, pack_images
from handvae.labels import NUM_CLASSES
from handvae.runtime import init_ray

PER_SPLIT = {"train": 80, "test": 20}


def main(letters_csv: str = typer.Option(...), mnist_dir: str = typer.Option(...)):
    init_ray()
    out = sample_dir()
    shutil.rmtree(out, ignore_errors=True)
    counts = {}
    for split in SPLITS:
        batches = list(
            read_split(DataSources(letters_csv=letters_csv, mnist_dir=mnist_dir), split).iter_batches(
                batch_format="numpy", batch_size=None
            )
        )
        batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        order = np.lexsort((batch["row"], batch["source"], batch["label"]))  # deterministic whatever the block order
        keep = np.concatenate([order[batch["label"][order] == c][: PER_SPLIT[split]] for c in range(NUM_CLASSES)])
        chosen = select(batch, np.sort(keep))
        chosen["source"] = np.array([os.path.basename(s) for s in chosen["source"]], dtype=object)
        os.makedirs(os.path.join(out, split))
        pq.write_table(pack_images(chosen), os.path.join(out, split, "part-0.parquet"), compression="zstd")
        counts[split] = len(chosen["label"])
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump(
            {"sources": {"letters_csv": "A_Z Handwritten Data.csv (Kaggle)", "mnist": "MNIST IDX"}, "rows": counts},
            f,
            indent=2,
        )
    open(os.path.join(out, SUCCESS_MARKER), "w").close()
    print(f"wrote {counts} to {out}")


if __name__ == "__main__":
    typer.run(main)
