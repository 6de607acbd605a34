"""handvae data set folders: what `handvae prepare` and `handvae generate` write, local or a URI.

    DIR/_SUCCESS                      complete iff present (written last)
    DIR/manifest.json                 {"files": [...parquet paths relative to DIR], ...} when generated
    DIR/train/*.parquet, DIR/test/*.parquet      a prepared folder
    DIR/*.parquet                     a generated folder without a "files" list (older `handvae generate`)

Images come from a fixed_size_binary[784] column, `pixels` (generated) or `image` (prepared): 28x28
uint8 row-major, white ink on black. Labels from `label` (0-35). The split from a `split` column
where there is one; otherwise a seeded hash of each record's key (`hashed_split`): the same rows
are test rows wherever the folder lives and however it is read.

Records are keyed by where they are in the data set, not on disk: a prepared folder keeps the
provenance it was made with (`source` file name, `row`); any other folder gives each row the file
name relative to DIR as `source` and its index in that file as `row`. A copy of DIR elsewhere, or
the same folder read through a URI, has the same keys, splits and order.

The plan (`plan_folder`) reads only the files' footers (and a `split` column where there is one),
on the caller; `read_unit` reads one row group; `read_slices` reads a streaming training worker's
share of an epoch, in that worker. Pure pyarrow and numpy: the Ray wiring is in
`handvae.data.sources`.
"""

import json
import posixpath
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from handvae import storage
from handvae.data.records import SPLITS, letters_split, order_keys
from handvae.errors import DataError
from handvae.formats.dataset_folder import IMAGE_COLUMNS, MANIFEST, PACKED_IMAGE, SUCCESS_MARKER, unpack_images
from handvae.labels import NUM_CLASSES

READ_BATCH_ROWS = 8192
"""Rows a reader decodes at a time: 6.4 MB of images."""
WHAT = "a folder written by `handvae prepare` or `handvae generate`"


@dataclass(frozen=True)
class Unit:
    """One row group of one parquet file: what a read task reads."""

    file: str
    """Path relative to the folder (posix)."""
    row_group: int
    first_row: int
    """Index in the file of the row group's first row."""
    rows: tuple[int, int]
    """Rows of the train and of the test split in this row group."""


@dataclass(frozen=True)
class FolderPlan:
    root: str
    """The folder as the user gave it (a path or a URI); errors name files under it."""
    prepared: bool
    """Laid out by `handvae prepare`: records keep their stored `source` and `row`."""
    image_column: str
    split_column: bool
    split_seed: int
    test_fraction: float
    units: tuple[Unit, ...]

    def rows(self, split: str) -> int:
        return sum(unit.rows[SPLITS.index(split)] for unit in self.units)

    def path(self, file: str) -> str:
        return f"{self.root.rstrip('/')}/{file}"


def hashed_split(file: str, rows: np.ndarray, seed: int, test_fraction: float) -> np.ndarray:
    """ "train"/"test" for rows of a file of a folder without a split column."""
    return letters_split(order_keys(np.full(len(rows), file, dtype=object), rows), seed, test_fraction)


def plan_folder(directory: str, split_seed: int = 0, test_fraction: float = 0.2) -> FolderPlan:
    """Check the folder and every file's schema; count each row group's rows per split."""
    fs, root = storage.resolve_input(directory)
    try:
        return _plan_folder(fs, root, directory, split_seed, test_fraction)
    except OSError as exc:  # an object store refusing the credentials, a network error
        raise DataError(f"{directory}: cannot be read ({exc}); check the path, or a URI's credentials") from None


def _plan_folder(fs: pafs.FileSystem, root: str, directory: str, split_seed: int, test_fraction: float) -> FolderPlan:
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise DataError(f"{directory}: a file, expected a folder ({WHAT})")
    if info.type != pafs.FileType.Directory:
        raise DataError(f"{directory}: no such folder (expected {WHAT})")
    if fs.get_file_info(f"{root}/{SUCCESS_MARKER}").type != pafs.FileType.File:
        raise DataError(
            f"{directory}: no {SUCCESS_MARKER} marker, so not a complete data set (expected {WHAT}; run it again)"
        )
    manifest = _read_manifest(fs, root, directory)
    files, prepared = _list_files(fs, root, directory, manifest)
    plan_root = directory if "://" in directory else root
    units, image_column, split_column = [], None, None
    for file in files:
        path = f"{plan_root}/{file}"
        try:
            parquet = pq.ParquetFile(fs.open_input_file(f"{root}/{file}"))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable parquet file ({exc})") from None
        schema = parquet.schema_arrow
        column = _image_column(schema, path)
        if "label" not in schema.names:
            raise DataError(
                f"{path}: no `label` column (expected labels 0-{NUM_CLASSES - 1} in `label`, as {WHAT} has)"
            )
        has_split = "split" in schema.names
        if (image_column, split_column) != (None, None) and (column, has_split) != (image_column, split_column):
            raise DataError(
                f"{path}: columns differ from the folder's other files (image in `{column}`, split column: {has_split})"
            )
        image_column, split_column = column, has_split
        first = 0
        for group in range(parquet.num_row_groups):
            count = parquet.metadata.row_group(group).num_rows
            if has_split:
                stored_splits = parquet.read_row_group(group, columns=["split"]).column(0)
                if stored_splits.null_count:
                    row = first + pc.index(pc.is_null(stored_splits), True).as_py()
                    raise DataError(f"{path}, row {row}: `split` is null; expected {' or '.join(SPLITS)}")
                splits = stored_splits.to_numpy(zero_copy_only=False)
            else:
                splits = hashed_split(file, np.arange(first, first + count), split_seed, test_fraction)
            unknown = set(np.unique(splits).tolist()) - set(SPLITS)
            if unknown:
                raise DataError(f"{path}: split values {sorted(map(str, unknown))}; expected {' or '.join(SPLITS)}")
            units.append(Unit(file, group, first, (int((splits == "train").sum()), int((splits == "test").sum()))))
            first += count
    if not sum(sum(unit.rows) for unit in units):
        raise DataError(f"{directory}: its parquet files hold no rows (expected {WHAT})")
    return FolderPlan(plan_root, prepared, image_column, split_column, split_seed, test_fraction, tuple(units))


def read_unit(
    plan: FolderPlan, unit: Unit, split: str | None, with_provenance: bool = True, rows: tuple[int, int] | None = None
) -> Iterator[pa.Table]:
    """The records of one row group, checked, in tables of at most READ_BATCH_ROWS rows: `image`
    (fixed_size_binary[784]) and `label` (uint8), and with provenance `source`, `row`, `split`.
    Only those of `split` (both with None); with `rows` = (start, stop), only those of its rows.

    Read in batches, so that a large row group (a generated file's may hold 100k images) never sits
    whole in the reader's memory, and a slice stops reading where it ends."""
    fs, root = storage.resolve_input(plan.root)
    path = plan.path(unit.file)
    stored = ["source", "row"] if plan.prepared and with_provenance else []
    columns = [plan.image_column, "label"] + ["split"] * plan.split_column + stored
    start, stop = rows or (0, None)
    first, seen = unit.first_row, 0  # the next batch's first row in the file; rows of the split before it
    try:
        parquet = pq.ParquetFile(fs.open_input_file(f"{root}/{unit.file}"))
        for batch in parquet.iter_batches(READ_BATCH_ROWS, row_groups=[unit.row_group], columns=columns):
            table = _records(pa.Table.from_batches([batch]), plan, unit.file, path, first, stored)
            first += len(batch)
            if split is not None:
                table = table.filter(pc.equal(table.column("split"), split))
            low, high = max(start - seen, 0), table.num_rows if stop is None else min(stop - seen, table.num_rows)
            seen += table.num_rows
            if high > low:
                yield table.slice(low, high - low).select(table.column_names if with_provenance else ["image", "label"])
            if stop is not None and seen >= stop:
                return
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise DataError(f"{path}: not readable as the data set's parquet ({exc})") from None


def read_slices(
    plan: FolderPlan, split: str, slices: Iterable[tuple[int, int, int]]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images (n, 28, 28) uint8, labels (n,) uint8) of the (unit index, start, stop) row ranges of
    a split, in the slices' order: a streaming training worker reads its share itself, the next
    batch read ahead in a thread so that a remote store's latency overlaps training.

    Not Ray Data: one execution per read group cost 19 s of a worker's time per 400,000 rows
    against 1.6 s for these reads of the same row groups in the worker (the two in one Ray actor,
    on 2 cores), and on 2 cores its read tasks took CPU from training. The order is the slices',
    so the epoch's rows and order stay a function of the seed alone (`handvae.data.streaming`)."""

    def tables():
        for index, start, stop in slices:
            yield from read_unit(plan, plan.units[index], split, with_provenance=False, rows=(start, stop))

    for table in _read_ahead(tables()):
        yield unpack_images(table.column("image")), table.column("label").to_numpy()


_DONE = object()


def _read_ahead(items: Iterator, depth: int = 1) -> Iterator:
    """`items`, each produced by a thread up to `depth` ahead of the consumer; the thread's errors
    are raised in the consumer, and the thread stops when the consumer does."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        """Queues the item, unless the consumer stops first (then a blocking put would never return)."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            offer(exc)

    thread = threading.Thread(target=produce, name="handvae-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _records(table: pa.Table, plan: FolderPlan, file: str, path: str, first: int, stored: list[str]) -> pa.Table:
    """Rows [first, first + n) of a file as checked records (image, label, split, and source and
    row: stored ones, or the file's name and the row in it)."""
    rows = np.arange(first, first + table.num_rows)
    images = table.column(plan.image_column)
    if images.null_count:
        raise DataError(f"{path}: {images.null_count} images are null")
    labels = table.column("label")
    if labels.null_count or not pa.types.is_integer(labels.type):
        raise DataError(
            f"{path}: `label` is {labels.type} with {labels.null_count} nulls; expected integers 0-{NUM_CLASSES - 1}"
        )
    values = labels.to_numpy()
    bad = np.flatnonzero((values < 0) | (values >= NUM_CLASSES))
    if bad.size:
        raise DataError(f"{path}, row {rows[bad[0]]}: label {values[bad[0]]} is outside 0-{NUM_CLASSES - 1}")
    for name in stored:
        if table.column(name).null_count:
            raise DataError(f"{path}: {table.column(name).null_count} nulls in `{name}` (expected provenance)")
    splits = (
        table.column("split")
        if plan.split_column
        else pa.array(hashed_split(file, rows, plan.split_seed, plan.test_fraction), pa.string())
    )
    return pa.table(
        {
            "image": images,
            "label": pa.array(values.astype(np.uint8)),
            "source": table.column("source") if stored else pa.repeat(pa.scalar(file), len(rows)),
            "row": table.column("row") if stored else pa.array(rows),
            "split": splits,
        }
    )


def _read_manifest(fs: pafs.FileSystem, root: str, directory: str) -> dict:
    if fs.get_file_info(f"{root}/{MANIFEST}").type != pafs.FileType.File:
        return {}
    with fs.open_input_stream(f"{root}/{MANIFEST}") as stream:
        try:
            manifest = json.loads(stream.read())
        except ValueError as exc:
            raise DataError(f"{directory}/{MANIFEST}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{directory}/{MANIFEST}: expected a JSON object")
    return manifest


def _list_files(fs: pafs.FileSystem, root: str, directory: str, manifest: dict) -> tuple[list[str], bool]:
    """(files relative to the folder, sorted; whether it is a prepared folder)."""
    if "files" in manifest:
        files = manifest["files"]
        if not isinstance(files, list) or not all(
            isinstance(f, str) and f and not f.startswith("/") and ".." not in f.split("/") for f in files
        ):
            raise DataError(f"{directory}/{MANIFEST}: `files` must be a list of parquet paths relative to the folder")
        twice = sorted({file for file in files if files.count(file) > 1})
        if twice:
            raise DataError(f"{directory}/{MANIFEST}: lists {twice[0]} {files.count(twice[0])} times; list each once")
        for file in files:
            if fs.get_file_info(f"{root}/{file}").type != pafs.FileType.File:
                raise DataError(f"{directory}/{file}: listed in {MANIFEST} but missing")
        return sorted(files), manifest.get("format") == "handvae.prepared"
    by_split = [_parquet_names(fs, f"{root}/{split}", f"{split}/") for split in SPLITS]
    if any(by_split):
        return sorted(name for names in by_split for name in names), True
    files = _parquet_names(fs, root, "")
    if not files:
        raise DataError(
            f"{directory}: no parquet files (expected {WHAT}: train/*.parquet and test/*.parquet, or a manifest.json listing its files)"
        )
    return sorted(files), False


def _parquet_names(fs: pafs.FileSystem, folder: str, prefix: str) -> list[str]:
    listing = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return [
        prefix + posixpath.basename(info.path)
        for info in listing
        if info.type == pafs.FileType.File and info.path.endswith(".parquet")
    ]


def _image_column(schema: pa.Schema, path: str) -> str:
    for name in IMAGE_COLUMNS:
        if name in schema.names and schema.field(name).type == PACKED_IMAGE:
            return name
    found = ", ".join(f"`{n}` {schema.field(n).type}" for n in IMAGE_COLUMNS if n in schema.names) or "neither"
    raise DataError(
        f"{path}: images are {found}; expected `pixels` or `image` as {PACKED_IMAGE}: 28x28 uint8 images "
        "(generated lines of --text are wider and cannot be trained on)"
    )
