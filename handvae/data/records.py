"""The one schema every reader produces, and the deterministic letters split.

A batch of records is a dict of numpy arrays:
- image: (N, 28, 28) uint8, white ink on black, as in the files;
- label: (N,) uint8, the model's class 0-35 (digits 0-9, letters 10-35);
- source: (N,) str, the file the image came from;
- row: (N,) int64, where in that file: the 1-based line of a CSV, the 0-based record of an IDX file;
- split: (N,) str, "train" or "test".
"""


import numpy as np
import pyarrow.fs as pafs

from handvae import storage
from handvae.errors import DataError

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
    """"train"/"test" for each data row, from a hash of (seed, row index) alone.

    The row index counts data rows from 0 (a header line does not count), so the split does not
    depend on how the file is cut into blocks, how many workers read it, or whether a header exists.
    """
    uniform = (mix64(data_row_index, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(uniform < test_fraction, "test", "train").astype(object)


def mix64(values: np.ndarray, seed: int) -> np.ndarray:
    """An independent-looking uint64 for each (seed, value): the splitmix64 finaliser, so that
    consecutive values do not get related hashes."""
    # The seed's term in Python integers, wrapped to 64 bits by hand: numpy warns when a *scalar*
    # uint64 product overflows (seed >= 2 here), though wrapping is what the hash wants. The array
    # operations below wrap silently.
    x = values.astype(np.uint64) + np.uint64((seed & 0xFFFFFFFF) * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def resolve_path(path_or_uri: str) -> tuple[pafs.FileSystem, str]:
    """`storage.resolve` for inputs: a URI pyarrow cannot open is the user's DataError, naming it."""
    try:
        return storage.resolve(path_or_uri)
    except Exception as exc:
        raise DataError(f"{path_or_uri}: cannot open this URI ({exc})") from exc


def require_file(fs: pafs.FileSystem, path: str, what: str) -> int:
    """The file's size, or a DataError saying it is missing or not a file."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        raise DataError(f"{path}: a folder, expected the {what} file")
    if info.type != pafs.FileType.File:
        raise DataError(f"{path}: {what} not found")
    return info.size


def unpack_images(column) -> np.ndarray:
    """A pyarrow fixed_size_binary column of row-major uint8 images IMAGE_SIDE rows high (28x28,
    or a line of characters 28 x 28*k) as numpy (N, IMAGE_SIDE, width), a view of the column's
    buffer: no copy for a column of one chunk."""
    packed = column.combine_chunks()
    size = packed.type.byte_width
    pixels = np.frombuffer(packed.buffers()[1], dtype=np.uint8, count=len(packed) * size, offset=packed.offset * size)
    return pixels.reshape(-1, IMAGE_SIDE, size // IMAGE_SIDE)
