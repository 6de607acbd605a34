"""MNIST in its original IDX files, gzipped or not, in torchvision's layout: ROOT/MNIST/raw/.

Pure numpy; `read_mnist_split` returns whole splits (70,000 images are 55 MB) for the Ray wiring
in `handvae.data.sources` to cut into blocks.
"""

import gzip

import numpy as np

from handvae import storage
from handvae.data.records import IMAGE_SIDE, Batch, make_batch
from handvae.errors import DataError
from handvae.labels import NUM_DIGITS

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def raw_dir(root: str) -> str:
    return root.rstrip("/") + "/MNIST/raw"


def download_mnist(root: str) -> None:
    """Fetch the IDX files with torchvision, for users who are online."""
    import torchvision

    for train in (True, False):
        torchvision.datasets.MNIST(root=root, train=train, download=True)


def read_mnist_split(root: str, split: str) -> Batch:
    images_name, labels_name = _FILES[split]
    images_path, images = _read_idx(root, images_name, _IMAGES_MAGIC, "images")
    labels_path, labels = _read_idx(root, labels_name, _LABELS_MAGIC, "labels")
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}"
        )
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    bad = np.flatnonzero(labels >= NUM_DIGITS)
    if bad.size:
        raise DataError(f"{labels_path}, record {bad[0]}: label {labels[bad[0]]}, expected a digit 0-9")
    count = len(labels)
    return make_batch(images, labels, images_path, np.arange(count), np.full(count, split, dtype=object))


def _read_idx(root: str, name: str, magic: int, what: str) -> tuple[str, np.ndarray]:
    fs, directory = storage.resolve_input(raw_dir(root))
    for candidate in (name, name + ".gz"):
        path = f"{directory}/{candidate}"
        if fs.get_file_info(path).is_file:
            break
    else:
        raise DataError(
            f"MNIST {what} not found: expected {directory}/{name} or {name}.gz "
            f"(torchvision's layout, ROOT/MNIST/raw/; pass --download to fetch it)"
        )
    try:
        with fs.open_input_stream(path, compression=None) as stream:
            data = stream.read()
    except OSError as exc:  # permission denied, a network error
        raise DataError(f"{path}: cannot read the MNIST {what} file ({exc})") from None
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable gzip file ({exc})") from exc
    return path, _parse_idx(path, data, magic)


def _parse_idx(path: str, data: bytes, magic: int) -> np.ndarray:
    ndim = magic & 0xFF
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise DataError(f"{path}: truncated: {len(data)} bytes, shorter than the {header_bytes}-byte IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(
            f"{path}: IDX magic number 0x{found:08x}, expected 0x{magic:08x} (unsigned bytes, {ndim} dimensions)"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_bytes + int(np.prod(shape))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path}: {state}: {len(data)} bytes, the header's shape {shape} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(shape)
