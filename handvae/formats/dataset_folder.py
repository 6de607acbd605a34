"""The handvae data set folder: its layout, schema and features, the one definition that `handvae
prepare` and `handvae generate` write and the readers (`handvae.data.folders`) read, local or a URI.

    DIR/_SUCCESS                      complete iff present (written last)
    DIR/manifest.json                 handvae's record: format, owner, files (`handvae.formats.outputs`)
    DIR/train/*.parquet, DIR/test/*.parquet      a prepared folder: COLUMNS of `handvae.data.records`
    DIR/README.md                     a generated folder's data set card (Hugging Face's layout)
    DIR/data/<run>/train-*.parquet    a generated folder's rows: FEATURES, one file per write task
    DIR/*.parquet                     a generated folder without a "files" list (older `handvae generate`)

Images are a fixed_size_binary[784] column (PACKED_IMAGE), `pixels` (generated) or `image`
(prepared): 28x28 uint8 row-major, white ink on black (a line of text: 28 x 28*k). Pure pyarrow
and numpy.
"""

import json

import numpy as np
import pyarrow as pa

from handvae.data.records import COLUMNS, IMAGE_PIXELS, IMAGE_SIDE, Batch
from handvae.labels import CHARSET

SUCCESS_MARKER = "_SUCCESS"
MANIFEST = "manifest.json"
DATA_DIR = "data"
RUN_FILE = "train-{:05d}.parquet"
"""A generation run's parquet files in DATA_DIR/<run>/, by write task: `RUN_FILE.format(index)`."""
"""A generated folder's runs: DATA_DIR/<run>/."""
CARD = "README.md"
SHEET = "sheet.png"
PACKED_IMAGE = pa.binary(IMAGE_PIXELS)
IMAGE_COLUMNS = ("pixels", "image")  # in order of preference


# Each column's Hugging Face feature: a Value's dtype, or "class_label" / "class_probs" / "image".
FEATURES = {
    "style_id": "int64",
    "source": "string",
    "row": "int64",
    "sample": "int16",
    "char": "string",
    "label": "class_label",
    "label_probs": "class_probs",
    "pixels": "binary",
    "image": "image",
}
CLASS_PROBS = pa.list_(pa.float32(), len(CHARSET))
"""`label_probs`: a probability for each class 0-35 (null for a line of text, or left out by the options)."""


def schema_features() -> dict:
    """The features as `datasets` stores them in a parquet schema's metadata (Features.to_dict)."""

    def feature(kind: str) -> dict:
        if kind == "class_label":
            return {"names": list(CHARSET), "_type": "ClassLabel"}
        if kind == "class_probs":
            return {"feature": {"dtype": "float32", "_type": "Value"}, "length": len(CHARSET), "_type": "List"}
        return {"_type": "Image"} if kind == "image" else {"dtype": kind, "_type": "Value"}

    return {name: feature(kind) for name, kind in FEATURES.items()}


def card_features() -> list[dict]:
    """The features as a data set card's YAML declares them."""

    def declared(kind: str) -> dict:
        if kind == "class_label":
            return {"dtype": {"class_label": {"names": {str(i): c for i, c in enumerate(CHARSET)}}}}
        return {"list": "float32", "length": len(CHARSET)} if kind == "class_probs" else {"dtype": kind}

    return [{"name": name, **declared(kind)} for name, kind in FEATURES.items()]


SCHEMA_METADATA = {b"huggingface": json.dumps({"info": {"features": schema_features()}}).encode()}


def pack_images(batch: Batch) -> pa.Table:
    """A batch of records as the table that prepared parquet holds."""
    images = np.ascontiguousarray(batch["image"], dtype=np.uint8)
    packed = pa.FixedSizeBinaryArray.from_buffers(PACKED_IMAGE, len(images), [None, pa.py_buffer(images)])
    return pa.table({name: packed if name == "image" else batch[name] for name in COLUMNS})


def unpack_images(column) -> np.ndarray:
    """A pyarrow fixed_size_binary column of row-major uint8 images IMAGE_SIDE rows high (28x28,
    or a line of characters 28 x 28*k) as numpy (N, IMAGE_SIDE, width), a view of the column's
    buffer: no copy for a column of one chunk."""
    packed = column.combine_chunks()
    size = packed.type.byte_width
    pixels = np.frombuffer(packed.buffers()[1], dtype=np.uint8, count=len(packed) * size, offset=packed.offset * size)
    return pixels.reshape(-1, IMAGE_SIDE, size // IMAGE_SIDE)


def fixed_size_binary(images: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Each image as one fixed-size value, from the array's buffer without a copy per image."""
    size = images[0].size
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(size), len(images), [None, pa.py_buffer(np.ascontiguousarray(images))]
    )
