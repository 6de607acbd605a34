"""Ray Data datasets over the readers: the one place data meets Ray.

Every dataset of `read_split` has the columns of `handvae.data.records` (image, label, source, row,
split), whatever the source: the Kaggle CSV, MNIST IDX files, or a data set folder (prepared or
generated, `handvae.data.folders`). A streaming training worker reads its share of a folder
itself (`handvae.data.folders.read_slices`), without Ray Data (measured there).
"""

from collections import Counter
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
import pyarrow as pa
import ray
import ray.data
from ray.data.block import BlockAccessor, BlockMetadata
from ray.data.datasource import Datasource, ReadTask
from ray.data.exceptions import UserCodeException
from ray.data.extensions import ArrowTensorArray

from handvae.data import folders, kaggle_csv, mnist_idx
from handvae.data.records import IMAGE_PIXELS, SPLITS, Batch, order_keys, select
from handvae.errors import SEED_MAX, DataError, OutputError, check_int
from handvae.formats.dataset_folder import unpack_images
from handvae.labels import NUM_CLASSES

_MNIST_BLOCK_ROWS = 8192
# Prepared parquet stores each image as 784 raw bytes (folders.PACKED_IMAGE). Ray's own tensor column
# is a list<uint8> in parquet, which pyarrow decodes ~40x slower (2 s against 0.05 s for 57k images).


@dataclass(frozen=True)
class DataSources:
    """Where the images come from. With no source given, the bundled real sample."""

    letters_csv: str | None = None
    """Kaggle A-Z CSV, a local path or any URI pyarrow reads (s3://, gs://, ...)."""
    mnist_dir: str | None = None
    """MNIST root in torchvision's layout: the IDX files under ROOT/MNIST/raw/, gzipped or not."""
    download: bool = False
    """Fetch MNIST into mnist_dir with torchvision first (needs a network)."""
    prepared_dir: str | None = None
    """A folder written by `handvae prepare`; excludes the other sources (the same reader as `dataset`)."""
    dataset: str | None = None
    """A folder (path or URI) written by `handvae prepare` or `handvae generate`; excludes the other
    sources. A folder without a split column is split by a seeded hash of each row's key
    (split_seed, test_fraction), see `handvae.data.folders`."""
    split_seed: int = 0
    """Seed of the letters' train/test split (MNIST keeps its own split)."""
    test_fraction: float = 0.2
    """Share of letters in the test split."""
    csv_chunk_bytes: int | None = None
    """Bytes of CSV per read task; by default about 16 tasks for a small file, 16 MB for a large one."""

    def __post_init__(self):
        if self.prepared_dir and self.dataset:
            raise DataError("give --dataset or --prepared, not both")
        if (self.prepared_dir or self.dataset) and (self.letters_csv or self.mnist_dir):
            raise DataError(
                "give either a data set folder (--dataset/--prepared) or raw sources (--letters-csv/--mnist-dir), not both"
            )
        if self.download and not self.mnist_dir:
            raise DataError("--download needs --mnist-dir: the folder to download MNIST into")
        check_int("--split-seed", self.split_seed, 0, SEED_MAX)
        if not 0.0 < self.test_fraction < 1.0:
            raise DataError(f"test_fraction must be between 0 and 1, got {self.test_fraction}")
        if self.csv_chunk_bytes is not None and self.csv_chunk_bytes < 1:
            raise DataError(f"csv_chunk_bytes must be positive, got {self.csv_chunk_bytes}")

    @property
    def is_sample(self) -> bool:
        return not (self.letters_csv or self.mnist_dir or self.prepared_dir or self.dataset)

    def describe(self) -> dict:
        """What a run records about its data."""
        return {**asdict(self), "bundled_sample": self.is_sample}


def sample_dir() -> str:
    """The bundled sample: a prepared folder of real MNIST and Kaggle A-Z images inside the package."""
    return str(resources.files("handvae.data") / "sample")


def read_split(sources: DataSources, split: str | None) -> ray.data.Dataset:
    """The images of one split ("train" or "test"), or of both with split=None."""
    if split is not None and split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    splits = SPLITS if split is None else (split,)
    plan = plan_sources_folder(sources)
    if plan:
        return read_folder(plan, splits)
    parts = []
    if sources.letters_csv:
        parts.append(read_letters_csv(sources.letters_csv, splits, sources))
    if sources.mnist_dir:
        if sources.download:
            mnist_idx.download_mnist(sources.mnist_dir)
        parts.extend(_from_batch(mnist_idx.read_mnist_split(sources.mnist_dir, s)) for s in splits)
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def read_letters_csv(path: str, splits: tuple[str, ...], sources: DataSources) -> ray.data.Dataset:
    plan = kaggle_csv.plan_csv(path, sources.csv_chunk_bytes)
    datasource = LettersCsvDatasource(plan, splits, sources.split_seed, sources.test_fraction)
    # One block per byte range: Ray's default minimum of 200 blocks would cut each range's output
    # into slivers and stop the next operator from fusing into the read.
    return ray.data.read_datasource(datasource, override_num_blocks=len(plan.chunks))


class BadInputError(DataError, UserCodeException):
    """A DataError raised inside a Ray Data task: Ray reports it as the user's error, not as a Ray bug."""


class BadOutputError(OutputError, UserCodeException):
    """An OutputError raised inside a Ray Data task (a write to a full disk): the user's, as BadInputError."""


class LettersCsvDatasource(Datasource):
    """One read task per planned byte range of the CSV."""

    def __init__(self, plan: kaggle_csv.CsvPlan, splits: tuple[str, ...], split_seed: int, test_fraction: float):
        super().__init__()
        self._plan, self._splits, self._seed, self._test_fraction = plan, splits, split_seed, test_fraction

    def estimate_inmemory_data_size(self) -> int:
        return self._plan.num_data_rows * (kaggle_csv.NUM_FIELDS + 64)

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        plan, splits, seed, fraction = self._plan, self._splits, self._seed, self._test_fraction

        def read(chunk: kaggle_csv.CsvChunk):
            try:
                batch = kaggle_csv.read_chunk(plan, chunk, seed, fraction)
            except DataError as exc:
                raise BadInputError(*exc.args) from None
            batch = _keep_splits(batch, splits)
            if len(batch["label"]):  # an empty (0, 28, 28) array does not convert to an Arrow tensor column
                yield BlockAccessor.batch_to_block(batch)

        tasks = []
        for chunk in plan.chunks:
            approx_rows = (chunk.end - chunk.start) // 1800  # a Kaggle line is ~1.5-2.5 KB
            metadata = BlockMetadata(
                num_rows=None,
                size_bytes=approx_rows * (kaggle_csv.NUM_FIELDS + 64),
                exec_stats=None,
                input_files=(plan.path,),
            )
            tasks.append(ReadTask(lambda chunk=chunk: read(chunk), metadata, per_task_row_limit=per_task_row_limit))
        return tasks


TRAINING_COLUMNS = ["image", "label", "order_key"]


def training_columns(dataset: ray.data.Dataset) -> ray.data.Dataset:
    """Image, label and a stable order key from (source, row): workers sort by it, so what they
    train on does not depend on the order in which blocks arrive."""
    return dataset.map_batches(_with_order_key, batch_format="numpy", batch_size=None).select_columns(TRAINING_COLUMNS)


def to_tensors(dataset: ray.data.Dataset):
    """All images (N, 28, 28) uint8 and labels (N,) int64 of a dataset as torch tensors in this
    process, in a fixed order (by source and row)."""
    return keyed_tensors(dataset)[:2]


def keyed_tensors(dataset: ray.data.Dataset):
    """`to_tensors`, and each image's order key (N,) int64 from its source and row (a generated
    folder's records: their file and row in it; `handvae score` maps those to their
    style samples' keys)."""
    return sorted_tensors(training_columns(dataset).iter_torch_batches(batch_size=8192), with_keys=True)


def sorted_tensors(batches, with_keys: bool = False):
    """Torch batches of TRAINING_COLUMNS -> (images, labels), and with_keys their order keys,
    sorted by order key: the same tensors whatever order the blocks arrived in."""
    import torch  # here, not at the top: Ray Data's read workers import this module and need no torch

    batches = list(batches)
    if not batches:
        empty = torch.empty(0, 28, 28, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        return (*empty, torch.empty(0, dtype=torch.long)) if with_keys else empty
    keys = torch.cat([b["order_key"] for b in batches])
    order = keys.argsort()
    tensors = torch.cat([b["image"] for b in batches])[order], torch.cat([b["label"] for b in batches])[order].long()
    return (*tensors, keys[order]) if with_keys else tensors


def _with_order_key(batch: Batch) -> Batch:
    return {**batch, "order_key": order_keys(batch["source"], batch["row"])}


def _keep_splits(batch: Batch, splits: tuple[str, ...]) -> Batch:
    return batch if len(splits) == len(SPLITS) else select(batch, np.isin(batch["split"], splits))


def _from_batch(batch: Batch) -> ray.data.Dataset:
    table = BlockAccessor.batch_to_block(batch)
    blocks = [table.slice(i, _MNIST_BLOCK_ROWS) for i in range(0, table.num_rows, _MNIST_BLOCK_ROWS)]
    return ray.data.from_arrow(blocks)


def plan_sources_folder(sources: DataSources) -> folders.FolderPlan | None:
    """The plan of the parquet folder the sources name (the bundled sample without any), or None
    for raw sources."""
    if sources.letters_csv or sources.mnist_dir:
        return None
    return folders.plan_folder(
        sources.dataset or sources.prepared_dir or sample_dir(), sources.split_seed, sources.test_fraction
    )


def read_folder(plan: folders.FolderPlan, splits: tuple[str, ...]) -> ray.data.Dataset:
    """Records of a data set folder: one read task per parquet file, in blocks of up to
    folders.READ_BATCH_ROWS rows."""
    by_file: dict[str, list[folders.Unit]] = {}
    for unit in plan.units:
        if sum(unit.rows[SPLITS.index(s)] for s in splits):
            by_file.setdefault(unit.file, []).append(unit)
    split = splits[0] if len(splits) == 1 else None
    tasks = [(units, sum(u.rows[SPLITS.index(s)] for u in units for s in splits), None) for units in by_file.values()]
    return ray.data.read_datasource(
        FolderDatasource(plan, split, tasks, provenance=True), override_num_blocks=max(1, len(tasks))
    )


class FolderDatasource(Datasource):
    """Read tasks over row groups of a data set folder, read with pyarrow. Ray's read_parquet would
    first start actors to read every file's footer: 2 s of a 6 s read on 2 cores (benchmarks/ingest.py),
    and again in every run on the bundled sample; the plan has read the footers already."""

    def __init__(
        self,
        plan: folders.FolderPlan,
        split: str | None,
        tasks: list[tuple[list[folders.Unit], int, tuple[int, int] | None]],
        provenance: bool,
    ):
        """One read task per (units, their rows, a (start, stop) range of the rows or None)."""
        super().__init__()
        self._plan, self._split, self._tasks, self._provenance = plan, split, tasks, provenance

    def estimate_inmemory_data_size(self) -> int:
        return sum(rows for _, rows, _ in self._tasks) * (IMAGE_PIXELS + 64)

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        plan, split, provenance = self._plan, self._split, self._provenance

        def read(units: list[folders.Unit], row_range: tuple[int, int] | None):
            try:
                for unit in units:
                    for table in folders.read_unit(plan, unit, split, with_provenance=provenance, rows=row_range):
                        yield _unpack_images(table) if provenance else table
            except DataError as exc:
                raise BadInputError(*exc.args) from None

        return [
            ReadTask(
                lambda units=units, row_range=row_range: read(units, row_range),
                BlockMetadata(
                    num_rows=rows,
                    size_bytes=rows * (IMAGE_PIXELS + 64),
                    exec_stats=None,
                    input_files=tuple(plan.path(u.file) for u in units),
                ),
                per_task_row_limit=per_task_row_limit,
            )
            for units, rows, row_range in self._tasks
        ]


def _unpack_images(table: pa.Table) -> pa.Table:
    """The packed fixed_size_binary[784] images as Ray's tensor column (N, 28, 28), without a copy."""
    images = ArrowTensorArray.from_numpy(unpack_images(table.column("image")))
    return table.set_column(table.schema.get_field_index("image"), "image", images)


def source_locations(sources: DataSources) -> tuple[str, ...]:
    """The files and folders a command reads: its output may not be, or hold, any of them."""
    return tuple(
        p
        for p in (
            sources.letters_csv,
            sources.mnist_dir,
            sources.dataset,
            sources.prepared_dir or (sample_dir() if sources.is_sample else None),
        )
        if p
    )


@dataclass
class Summary:
    """Rows per source file and split, and per class and split."""

    rows_by_source: Counter
    class_counts: dict[str, np.ndarray]

    @property
    def total(self) -> int:
        return sum(self.rows_by_source.values())


def summarize(dataset: ray.data.Dataset) -> Summary:
    """Reads (and so validates) every row of the dataset. The read tasks count their own rows by
    (source, split, label): the driver gets a few counts per block, not every row's strings."""
    rows_by_source: Counter = Counter()
    class_counts = {split: np.zeros(NUM_CLASSES, dtype=np.int64) for split in SPLITS}
    counts = dataset.map_batches(_count_rows, batch_format="pyarrow", batch_size=None)
    for table in counts.iter_batches(batch_format="pyarrow", batch_size=None):
        for source, split, label, count in zip(
            *(table.column(name).to_pylist() for name in ("source", "split", "label", "label_count"))
        ):
            rows_by_source[(source, split)] += count
            class_counts[split][label] += count
    return Summary(rows_by_source, class_counts)


def _count_rows(table: pa.Table) -> pa.Table:
    return (
        table.select(["source", "split", "label"])
        .group_by(["source", "split", "label"])
        .aggregate([("label", "count")])
    )
