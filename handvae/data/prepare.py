"""`handvae prepare`: the raw sources converted once to a prepared data set folder (parquet shards,
one folder per split; `handvae.formats.dataset_folder`), which later runs read faster.

    handvae prepare --letters-csv "A_Z Handwritten Data.csv" --mnist-dir data/mnist --out data/prepared
"""

import os

import pyarrow.parquet as pq

from handvae import storage
from handvae.data.records import COLUMNS, SPLITS
from handvae.data.sources import DataSources, read_split, source_locations
from handvae.errors import DataError, OutputError
from handvae.formats import outputs
from handvae.formats.dataset_folder import pack_images
from handvae.runtime import init_ray

PARQUET_FILE_ROWS = 50_000  # ~40 MB of images a file: a read task each


def prepare(sources: DataSources, out_dir: str, overwrite: bool = False) -> dict:
    """Convert the sources once to parquet shards, one folder per split, with a manifest and a marker.

    Through the output policy (handvae.formats.outputs): built in a staging folder and renamed into place,
    so `out_dir` is complete or as it was; an earlier prepared folder is replaced only with
    `overwrite`, a folder handvae did not write never.
    """
    if sources.prepared_dir or sources.dataset:
        raise DataError("prepare reads raw sources (--letters-csv/--mnist-dir), not a prepared folder")
    if storage.is_uri(out_dir):
        raise OutputError(f"{out_dir}: prepare writes a local (or mounted shared) folder")
    if not overwrite and outputs.owned_manifest(out_dir, "prepared") is not None:
        raise OutputError(f"{os.path.abspath(out_dir)}: already exists (pass --overwrite to replace it)")
    with outputs.folder_output(out_dir, "prepared", source_locations(sources)) as staged:  # before Ray starts
        init_ray()
        counts = {}
        for split in SPLITS:
            dataset = read_split(sources, split).map_batches(pack_images, batch_format="numpy", batch_size=None)
            dataset.write_parquet(os.path.join(staged.path, split), min_rows_per_file=PARQUET_FILE_ROWS)
            counts[split] = _count_written(os.path.join(staged.path, split))
        staged.manifest.update({"sources": sources.describe(), "rows": counts, "columns": list(COLUMNS)})
    return staged.manifest


def _count_written(directory: str) -> int:
    return sum(pq.ParquetFile(os.path.join(directory, name)).metadata.num_rows for name in os.listdir(directory))
