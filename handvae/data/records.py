"""The one schema every reader produces, and the deterministic letters split.

A batch of records is a dict of numpy arrays:
- image: (N, 28, 28) uint8, white ink on black, as in the files;
- label: (N,) uint8, the model's class 0-35 (digits 0-9, letters 10-35);
- source: (N,) str, the file the image came from;
- row: (N,) int64, where in that file: the 1-based line of a CSV, the 0-based record of an IDX file;
- split: (N,) str, "train" or "test".
"""

import posixpath
import zlib

import numpy as np
import pyarrow.fs as pafs

from handvae.errors import DataError
from handvae.rng import mix64

IMAGE_SIDE = 28
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
COLUMNS = ("image", "label", "source", "row", "split")
SPLITS = ("train", "test")

Batch = dict[str, np.ndarray]


def make_batch(images: np.ndarray, labels: np.ndarray, source: str, rows: np.ndarray, splits: np.ndarray) -> Batch:
    return {
        "image": images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE).astype(np.uint8, copy=False),
        "label": labels.astype(np.uint8, copy=False),
        "source": np.full(len(labels), source, dtype=object),
        "row": rows.astype(np.int64, copy=False),
        "split": splits.astype(object, copy=False),
    }


def select(batch: Batch, mask: np.ndarray) -> Batch:
    return {name: column[mask] for name, column in batch.items()}


def letters_split(data_row_index: np.ndarray, seed: int, test_fraction: float) -> np.ndarray:
    """ "train"/"test" for each data row, from a hash of (seed, row index) alone.

    The row index counts data rows from 0 (a header line does not count), so the split does not
    depend on how the file is cut into blocks, how many workers read it, or whether a header exists.
    """
    uniform = (mix64(data_row_index, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(uniform < test_fraction, "test", "train").astype(object)


def require_file(fs: pafs.FileSystem, path: str, what: str) -> int:
    """The file's size, or a DataError saying it is missing or not a file."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        raise DataError(f"{path}: a folder, expected the {what} file")
    if info.type != pafs.FileType.File:
        raise DataError(f"{path}: {what} not found")
    return info.size


def order_keys(sources: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A non-negative int64 per record from its (file name, row): the same record gets the same key
    however the data was cut into blocks, and wherever the file lives. An absolute path or a URI
    counts by its base name; a relative name (a file inside a data set folder) as it is."""
    source_ids = {s: zlib.crc32(_file_name(s).encode()) & 0x7FFFFFFF for s in set(sources.tolist())}
    ids = np.fromiter((source_ids[s] for s in sources.tolist()), dtype=np.int64, count=len(sources))
    return (ids << 32) | rows.astype(np.int64)


def _file_name(source: str) -> str:
    return (
        posixpath.basename(source.replace("\\", "/"))
        if "://" in source or source.startswith(("/", "\\")) or ":\\" in source
        else source
    )
