"""The generation job's worker side: the model actors that draw characters in the styles of a batch
of samples, the PNG stage, and the parquet sink whose write tasks write the data set's files.
Torch, numpy, pyarrow and Ray Data's actor and sink bases only: nothing of the driver's reports.
"""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink

from handvae import storage
from handvae.data.images import encode_pngs
from handvae.data.records import IMAGE_SIDE
from handvae.data.sources import BadOutputError
from handvae.errors import resource_error
from handvae.formats.dataset_folder import CLASS_PROBS, RUN_FILE, SCHEMA_METADATA, fixed_size_binary, unpack_images
from handvae.generate.options import GenerateOptions
from handvae.inference import ModelActor
from handvae.labels import CHARSET
from handvae.model.drawing import Drawing, class_probabilities, draw_blends, draw_in_styles

ROWS_PER_GROUP = 10_000


class Drawer(ModelActor):
    """Maps a batch of style samples to the characters drawn in their styles."""

    def __init__(self, model_path: str, use_gpu: bool, options: GenerateOptions, drawing: Drawing, counter=None):
        super().__init__(model_path, use_gpu)
        self.options, self.drawing, self.counter = options, drawing, counter

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        table, probs = self._draw(batch)
        column = self._label_probs(table, probs)
        table = table.add_column(table.schema.get_field_index("label") + 1, "label_probs", column)
        if self.counter is not None:  # a `handvae.inference.RowCounter`: the driver's progress
            self.counter.add.remote(table.num_rows)
        return table

    def _label_probs(self, table: pa.Table, probs: torch.Tensor | None) -> pa.Array:
        """The model's classifier's probabilities of each class for each drawn character (soft labels
        for users' training), computed here unless drawing did; null for a line of text (no one class)
        or where the options leave them out."""
        if self.options.text is not None or not self.options.label_probs:
            return pa.nulls(table.num_rows, CLASS_PROBS)
        if probs is None:
            probs = class_probabilities(self.model, torch.from_numpy(np.array(unpack_images(table.column("pixels")))))
        return pa.FixedSizeListArray.from_arrays(pa.array(probs.cpu().numpy().ravel()), type=CLASS_PROBS)

    def _draw(self, batch: dict[str, np.ndarray]) -> tuple[pa.Table, torch.Tensor | None]:
        """The rows drawn, and their `label_probs` where drawing computed them already (blends)."""
        o = self.options
        if o.blend:
            return self._blend(batch)
        if o.own_class:
            return self._own_class(batch), None
        count, draws = len(batch["style_id"]), o.samples_per_style
        keys = [(o.seed, int(k)) for k in batch["style_id"]]
        drawn = draw_in_styles(
            self.model,
            torch.tensor(batch["image"]),
            keys,
            torch.tensor(o.labels),
            self.drawing,
            draws,
            o.randomness,
            o.average,
        )
        drawn = drawn.flatten(0, 1).numpy()  # (styles x draws, characters, S, S)
        if o.text is not None:
            pictures = [_line(cells, o.text) for cells in drawn]  # one line per (style, draw)
            chars, labels_out = [o.text] * len(pictures), np.full(len(pictures), -1, np.int16)
        else:
            pictures = list(drawn.reshape(-1, IMAGE_SIDE, IMAGE_SIDE))
            chars, labels_out = list(o.chars) * (count * draws), np.tile(np.array(o.labels, np.int16), count * draws)
        per_style = len(pictures) // count
        return pa.table(
            {
                "style_id": np.repeat(batch["style_id"], per_style),
                "source": np.repeat(batch["source"], per_style),
                "row": np.repeat(batch["row"], per_style),
                "sample": np.tile(np.repeat(np.arange(draws, dtype=np.int16), per_style // draws), count),
                "char": chars,
                "label": labels_out,
                "pixels": fixed_size_binary(np.stack(pictures)),
            }
        ), None

    def _own_class(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Each style sample drawn as its own character, `draws` times (one model call per
        (character, draws) group of the batch); rows in the batch's order."""
        o, labels, draws = self.options, batch["label"].astype(np.int64), batch["draws"].astype(np.int64)
        images = torch.tensor(batch["image"])
        pictures: list[np.ndarray] = [np.empty(0)] * len(labels)
        for label, count in sorted(set(zip(labels.tolist(), draws.tolist()))):
            group = np.flatnonzero((labels == label) & (draws == count))
            keys = [(o.seed, int(batch["style_id"][i])) for i in group]
            drawn = draw_in_styles(
                self.model,
                images[group],
                keys,
                torch.tensor([label]),
                self.drawing,
                count,
                o.randomness,
                o.average,
                own_class=True,
            )
            for index, styles in zip(group, drawn[:, :, 0].numpy()):
                pictures[index] = styles  # (count, S, S)
        samples = np.concatenate([np.arange(n) for n in draws])
        return _own_class_rows(batch, draws, samples, labels, np.concatenate(pictures))

    def _blend(self, batch: dict[str, np.ndarray]) -> tuple[pa.Table, torch.Tensor]:
        """One blend per row (`handvae.generate.driver._blends`), rows in the batch's order."""
        labels = batch["label"].astype(np.int64)
        drawn, probs = draw_blends(
            self.model,
            torch.tensor(batch["image"]),
            torch.tensor(batch["partners"]),
            torch.from_numpy(labels),
            torch.tensor(batch["shares"]),
            self.drawing,
        )
        return _own_class_rows(batch, 1, batch["sample"], labels, drawn.numpy()), probs


def _own_class_rows(
    batch: dict[str, np.ndarray], repeats, samples: np.ndarray, labels: np.ndarray, pictures: np.ndarray
) -> pa.Table:
    """The rows of characters each drawn as its style sample's own class: each style sample's
    provenance and label `repeats` times (its draws: an array, or 1), then each row's draw number
    and picture."""
    labels = np.repeat(labels, repeats)
    return pa.table(
        {
            "style_id": np.repeat(batch["style_id"], repeats),
            "source": np.repeat(batch["source"], repeats),
            "row": np.repeat(batch["row"], repeats),
            "sample": samples.astype(np.int16),
            "char": [CHARSET[label] for label in labels],
            "label": labels.astype(np.int16),
            "pixels": fixed_size_binary(pictures),
        }
    )


def _line(cells: np.ndarray, text: str) -> np.ndarray:
    """One line image (28, 28 * len(text)): the drawn characters in order, spaces left black."""
    line = np.zeros((IMAGE_SIDE, IMAGE_SIDE * len(text)), dtype=np.uint8)
    drawn = iter(cells)
    for position, char in enumerate(text):
        if char != " ":
            line[:, position * IMAGE_SIDE : (position + 1) * IMAGE_SIDE] = next(drawn)
    return line


def with_image(table: pa.Table) -> pa.Table:
    """Adds the `image` column (PNG bytes in Hugging Face's Image struct). A stage of its own (Ray
    Data tasks), so that PNG encoding runs beside the model actors instead of between their calls."""
    pngs = pa.array(encode_pngs(unpack_images(table.column("pixels"))), pa.binary())
    return table.append_column(
        "image", pa.StructArray.from_arrays([pngs, pa.nulls(len(pngs), pa.string())], names=["bytes", "path"])
    )


class ParquetFiles(Datasink):
    """Each write task writes the rows it is given as one parquet file in the run's prefix, named by
    the task's index. With preserve_order the write tasks take the rows in order, so the same
    inputs give the same files, name for name and byte for byte, whatever the number of actors.
    (Ray's own write_parquet writes through pyarrow's write_dataset with threads, which may reorder
    rows within a file, and names files by a write UUID.)"""

    def __init__(self, prefix: str, rows_per_file: int):
        self.prefix, self.rows_per_file = prefix, rows_per_file
        self.written: list[tuple[str, int, int]] = []  # (file name, rows, bytes), in order

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    def write(self, blocks, ctx) -> tuple[str, int, int] | None:
        tables = [BlockAccessor.for_block(block).to_arrow() for block in blocks]
        tables = [table for table in tables if table.num_rows]
        if not tables:
            return None
        table = pa.concat_tables(tables).replace_schema_metadata(SCHEMA_METADATA)
        name = RUN_FILE.format(ctx.task_idx)
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, row_group_size=ROWS_PER_GROUP, compression="zstd")
        data = buffer.getvalue()
        try:
            storage.write_bytes(storage.join(self.prefix, name), data)
        except OSError as exc:  # a full disk, a store refusing: the user's to fix, without Ray's traceback
            found = resource_error(exc)
            if found is None:
                raise
            raise BadOutputError(found.message) from None
        return name, table.num_rows, data.size

    def on_write_complete(self, write_result) -> None:
        self.written = sorted(r for r in write_result.write_returns if r is not None)
