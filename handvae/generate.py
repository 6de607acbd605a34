"""Batch generation job: draw characters in the styles of handwriting samples, as a data set that
the workers write to a folder or any URI pyarrow writes (s3://, gs://, ...).

    handvae generate --model runs/NAME/model.pt --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --split test \
        --num-styles 100 --samples-per-style 2 --out generated/NAME

Styles come from a split of the readers' data (any data flags) or from image files of a person's
own handwriting (--style-images). A pool of model actors (one model build per actor, CPU or GPU)
encodes each style sample and decodes characters in that style (--pairing):
- own-class (the default for a data split): each character in styles of real samples of that same
  character, --num-styles drawings of each, by the model's detail decoder where it has one (the
  sample's own details carry over): a data set for training classifiers (its measure is
  `handvae score`; README, "Recipes");
- every-style (the default for --style-images and --text): every character asked for in every
  style, the full set 0-9 A-Z by default (the seed's last cell), a subset (--chars), or a line of
  text (--text): alphabets in one hand. Ray
Data tasks PNG-encode them and write the parquet files; the driver plans, prints progress, reads
the first styles back for the contact sheet, and commits (handvae.outputs.dataset_output).

OUT is laid out as a Hugging Face Hub parquet data set:
    OUT/README.md                       data set card: YAML data_files and features, provenance, credits
    OUT/data/<run>/train-00000.parquet  the rows (one file per write task; <run> is unique per run)
    OUT/sheet.png                       styles x characters, for a person to look at
    OUT/manifest.json                   format handvae.generated, files, rows, model, options, seed
    OUT/_SUCCESS                        OUT is complete iff it exists
One row per generated character (or per line with --text):
    style_id   int64   the style sample's key, from its (source, row); stable across runs
    source     string  the file the style sample came from
    row        int64   where in that file (1-based CSV line, 0-based IDX record, 0 for an image file)
    sample     int16   which draw from the style's posterior (0, 1, ...)
    char       string  the character (--text: the whole line)
    label      int16   its class 0-35 (--text: -1); a ClassLabel 0-9, A-Z for `datasets`
    pixels     fixed_size_binary  the image, row-major uint8, white ink on black: 28x28 (--text: 28 x 28*len)
    image      struct<bytes, path>  the same image as PNG: Hugging Face's Image feature
Both image columns, because they serve two readers: `pixels` is numpy's (np.frombuffer(...)
.reshape(28, -1)), decoded ~50x faster than the PNGs (benchmarks/generate_throughput.py); `image`
is what image tools and data set hubs take as is.

The card's data_files and the manifest's files name this run's files only, and each is replaced in
one atomic write: a reader who follows either sees the earlier output or the new one, whole, and
never what a killed run left. The same model, inputs and seed give identical parquet files.
"""

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
import torch
import yaml
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink

from handvae import outputs, storage
from handvae.config import Drawing
from handvae.data.datasets import DataSources, order_keys, read_split, source_locations
from handvae.data.images import encode_pngs, load_style_images
from handvae.data.records import IMAGE_SIDE, mix64, unpack_images
from handvae.errors import DataError
from handvae.inference import ModelActor, load_checked_model, map_with_model, start_ray_for_actors
from handvae.labels import CHARSET
from handvae.styles import draw_in_styles

PAIRINGS = ("own-class", "every-style")
CARD = "README.md"
SHEET = "sheet.png"
SHEET_STYLES = 12  # rows of the contact sheet
_ROWS_PER_GROUP = 10_000
_PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class GenerateOptions:
    chars: str = CHARSET
    """Characters to draw in every style, each of 0-9 and A-Z."""
    text: str | None = None
    """Instead of characters, this line of text (0-9, A-Z and spaces), one image per style and sample."""
    split: str = "test"
    """Which split of the data sources gives the styles."""
    pairing: str | None = None
    """Which characters each style sample is drawn as. "own-class": its own character only, the
    styles taken per character (num_styles of them for each character of `chars`): a data set
    whose characters look like the real ones of their class, what trains classifiers (README,
    "Generation"). "every-style": every character of `chars` in every style, alphabets in one
    hand. None: own-class for styles from a data split, every-style for style images and text
    (their samples have no class)."""
    style_images: tuple[str, ...] = ()
    """Image files of a person's handwriting, one character each; used instead of the data sources."""
    num_styles: int | None = None
    """Styles to use, drawn at random (by the seed) from the style samples; all of them by default.
    Own-class: per character; a character with fewer samples in the split has each of them drawn
    more often (further draws from the same style's posterior)."""
    samples_per_style: int = 1
    """Draws from each style's posterior."""
    randomness: float = 1.0
    """Scales the posterior's spread: 0 draws the mean style, 1 the posterior itself."""
    average: int = 1
    """Posterior draws averaged into one style (smoother, less varied)."""
    seed: int = 0
    """Seeds the choice of styles and every draw: the same seed and inputs give identical output."""
    sharpness: float | None = None
    """Factor on the decoder's logits (see `Drawing`); None: as the model's recipe draws."""
    class_shift: bool | None = None
    """Shift styles between classes' mean latents (see `Drawing`); None: as the model's recipe draws."""
    detail_sharpness: float | None = None
    """`sharpness` of the detail decoder's own-class drawings (see `Drawing`); None: as the model's recipe draws."""
    num_workers: int | None = None
    """Model actors; by default one per CPU but one (one per GPU with use_gpu)."""
    use_gpu: bool = False
    """One GPU per model actor."""
    styles_per_batch: int = 64
    """Style samples per model call."""
    rows_per_file: int = 100_000
    """Rows per parquet file (rounded down to whole model calls, at least one): each is one write task's share."""
    labels: tuple[int, ...] = field(init=False)

    def __post_init__(self):
        symbols = self.text if self.text is not None else self.chars
        what = "--text" if self.text is not None else "--chars"
        if not symbols:
            raise DataError(f"{what} is empty")
        allowed = CHARSET + (" " if self.text is not None else "")
        for position, char in enumerate(symbols):
            if char not in allowed:
                hint = " (the model draws upper-case letters)" if char.upper() in CHARSET else ""
                raise DataError(f"{what}: {char!r} at position {position + 1} is not supported; the model draws 0-9 and A-Z{hint}")
        if self.text is not None and not self.text.strip():
            raise DataError("--text holds only spaces")
        for name, low in (("samples_per_style", 1), ("average", 1), ("styles_per_batch", 1), ("rows_per_file", 1), ("seed", 0)):
            if getattr(self, name) < low:
                raise DataError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.num_styles is not None and self.num_styles < 1:
            raise DataError(f"num_styles must be >= 1, got {self.num_styles}")
        if self.num_workers is not None and self.num_workers < 1:
            raise DataError(f"num_workers must be >= 1, got {self.num_workers}")
        if not 0.0 <= self.randomness <= 10.0:
            raise DataError(f"randomness must be between 0 and 10, got {self.randomness}")
        object.__setattr__(self, "labels", tuple(CHARSET.index(c) for c in symbols if c != " "))
        unlabelled = "--text" if self.text is not None else "--style-images" if self.style_images else None
        if self.pairing is None:
            object.__setattr__(self, "pairing", "every-style" if unlabelled else "own-class")
        elif self.pairing not in PAIRINGS:
            raise DataError(f"pairing must be one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        elif self.pairing == "own-class" and unlabelled:
            raise DataError(f"pairing own-class draws each style sample as its own class; the samples of {unlabelled} have none (use every-style)")

    @property
    def own_class(self) -> bool:
        return self.pairing == "own-class"

    @property
    def images_per_draw(self) -> int:
        """Images drawn from one posterior draw: each character, the style's own, or the text's one line image."""
        return 1 if self.text is not None or self.own_class else len(self.chars)

    @property
    def per_style(self) -> int:
        """Output rows per style sample."""
        return self.samples_per_style * self.images_per_draw


class _Drawer(ModelActor):
    """Maps a batch of style samples to the characters drawn in their styles."""

    def __init__(self, model_path: str, use_gpu: bool, options: GenerateOptions, drawing: Drawing):
        super().__init__(model_path, use_gpu)
        self.options, self.drawing = options, drawing

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        o = self.options
        if o.own_class:
            return self._own_class(batch)
        count, draws = len(batch["style_id"]), o.samples_per_style
        keys = [(o.seed, int(k)) for k in batch["style_id"]]
        drawn = draw_in_styles(self.model, torch.tensor(batch["image"]), keys, torch.tensor(o.labels), self.drawing, draws, o.randomness, o.average)
        drawn = drawn.flatten(0, 1).numpy()  # (styles x draws, characters, S, S)
        if o.text is not None:
            pictures = [_line(cells, o.text) for cells in drawn]  # one line per (style, draw)
            chars, labels_out = [o.text] * len(pictures), np.full(len(pictures), -1, np.int16)
        else:
            pictures = list(drawn.reshape(-1, IMAGE_SIDE, IMAGE_SIDE))
            chars, labels_out = list(o.chars) * (count * draws), np.tile(np.array(o.labels, np.int16), count * draws)
        per_style = len(pictures) // count
        return pa.table({
            "style_id": np.repeat(batch["style_id"], per_style),
            "source": np.repeat(batch["source"], per_style),
            "row": np.repeat(batch["row"], per_style),
            "sample": np.tile(np.repeat(np.arange(draws, dtype=np.int16), per_style // draws), count),
            "char": chars,
            "label": labels_out,
            "pixels": _fixed_size_binary(np.stack(pictures)),
        })

    def _own_class(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Each style sample drawn as its own character, `draws` times (one model call per
        (character, draws) group of the batch); rows in the batch's order."""
        o, labels, draws = self.options, batch["label"].astype(np.int64), batch["draws"].astype(np.int64)
        images = torch.tensor(batch["image"])
        pictures: list[np.ndarray] = [np.empty(0)] * len(labels)
        for label, count in sorted(set(zip(labels.tolist(), draws.tolist()))):
            group = np.flatnonzero((labels == label) & (draws == count))
            keys = [(o.seed, int(batch["style_id"][i])) for i in group]
            drawn = draw_in_styles(self.model, images[group], keys, torch.tensor([label]), self.drawing, count, o.randomness, o.average, own_class=True)
            for index, styles in zip(group, drawn[:, :, 0].numpy()):
                pictures[index] = styles  # (count, S, S)
        return pa.table({
            "style_id": np.repeat(batch["style_id"], draws),
            "source": np.repeat(batch["source"], draws),
            "row": np.repeat(batch["row"], draws),
            "sample": np.concatenate([np.arange(n, dtype=np.int16) for n in draws]),
            "char": [CHARSET[label] for label in np.repeat(labels, draws)],
            "label": np.repeat(labels, draws).astype(np.int16),
            "pixels": _fixed_size_binary(np.concatenate(pictures)),
        })


def own_class_draws(style_ids: np.ndarray, labels: np.ndarray, options: GenerateOptions, where: str) -> np.ndarray:
    """Draws of each style sample (0: unused) when each is drawn as its own class: for every
    character asked for, num_styles draws (all its samples once without num_styles), spread over
    its samples as evenly as can be, in an order set by the seed; times samples_per_style."""
    draws = np.zeros(len(labels), np.int64)
    for label in options.labels:
        samples = np.flatnonzero(labels == label)
        if not samples.size:
            raise DataError(f"{where} holds no samples of {CHARSET[label]!r} to take its styles from; leave it out of --chars, or use --pairing every-style")
        if options.num_styles is None:
            draws[samples] = 1
            continue
        ranked = samples[np.argsort(mix64(style_ids[samples], options.seed), kind="stable")]
        rounds, rest = divmod(options.num_styles, len(samples))
        draws[ranked] = rounds
        draws[ranked[:rest]] += 1
    draws *= options.samples_per_style
    if draws.max(initial=0) > np.iinfo(np.int16).max:
        raise DataError(f"--num-styles {options.num_styles:,} x --samples-per-style {options.samples_per_style} would draw one sample {draws.max():,} times (at most {np.iinfo(np.int16).max:,}): {where} holds too few samples of some character")
    return draws


def _fixed_size_binary(images: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Each image as one fixed-size value, from the array's buffer without a copy per image."""
    size = images[0].size
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(size), len(images), [None, pa.py_buffer(np.ascontiguousarray(images))])


def _line(cells: np.ndarray, text: str) -> np.ndarray:
    """One line image (28, 28 * len(text)): the drawn characters in order, spaces left black."""
    line = np.zeros((IMAGE_SIDE, IMAGE_SIDE * len(text)), dtype=np.uint8)
    drawn = iter(cells)
    for position, char in enumerate(text):
        if char != " ":
            line[:, position * IMAGE_SIDE : (position + 1) * IMAGE_SIDE] = next(drawn)
    return line


def _with_image(table: pa.Table) -> pa.Table:
    """Adds the `image` column (PNG bytes in Hugging Face's Image struct). A stage of its own (Ray
    Data tasks), so that PNG encoding runs beside the model actors instead of between their calls."""
    pngs = pa.array(encode_pngs(unpack_images(table.column("pixels"))), pa.binary())
    return table.append_column("image", pa.StructArray.from_arrays([pngs, pa.nulls(len(pngs), pa.string())], names=["bytes", "path"]))


# Each column's Hugging Face feature: a Value's dtype, or "class_label" / "image".
_FEATURES = {"style_id": "int64", "source": "string", "row": "int64", "sample": "int16", "char": "string", "label": "class_label", "pixels": "binary", "image": "image"}


def _schema_features() -> dict:
    """The features as `datasets` stores them in a parquet schema's metadata (Features.to_dict)."""
    def feature(kind: str) -> dict:
        if kind == "class_label":
            return {"names": list(CHARSET), "_type": "ClassLabel"}
        return {"_type": "Image"} if kind == "image" else {"dtype": kind, "_type": "Value"}

    return {name: feature(kind) for name, kind in _FEATURES.items()}


def _card_features() -> list[dict]:
    """The features as a data set card's YAML declares them."""
    def dtype(kind: str):
        return {"class_label": {"names": {str(i): c for i, c in enumerate(CHARSET)}}} if kind == "class_label" else kind

    return [{"name": name, "dtype": dtype(kind)} for name, kind in _FEATURES.items()]


_SCHEMA_METADATA = {b"huggingface": json.dumps({"info": {"features": _schema_features()}}).encode()}


class _ParquetFiles(Datasink):
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
        table = pa.concat_tables(tables).replace_schema_metadata(_SCHEMA_METADATA)
        name = f"train-{ctx.task_idx:05d}.parquet"
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, row_group_size=_ROWS_PER_GROUP, compression="zstd")
        data = buffer.getvalue()
        storage.write_bytes(storage.join(self.prefix, name), data)
        return name, table.num_rows, data.size

    def on_write_complete(self, write_result) -> None:
        self.written = sorted(r for r in write_result.write_returns if r is not None)


def style_samples(sources: DataSources, options: GenerateOptions) -> ray.data.Dataset:
    """The style samples (image, source, row, style_id), in a fixed order: all of them, or the
    seed's random choice of num_styles."""
    if options.style_images:
        images = load_style_images(options.style_images)
        paths = np.array([os.path.abspath(p) for p in options.style_images], dtype=object)
        rows = np.zeros(len(paths), dtype=np.int64)
        batch = {"image": images, "source": paths, "row": rows, "style_id": order_keys(paths, rows)}
        samples = ray.data.from_arrow(BlockAccessor.batch_to_block(batch))
    else:
        columns = ["image", "label", "source", "row"] if options.own_class else ["image", "source", "row"]
        samples = read_split(sources, options.split).select_columns(columns)
        samples = samples.map_batches(_with_style_id, batch_format="numpy", batch_size=None)
    if options.own_class:
        return _with_own_class_draws(samples, options)
    if options.num_styles is None:
        return samples  # every style, in the order of the files
    ranked = samples.map_batches(_with_rank, fn_args=(options.seed,), batch_format="numpy", batch_size=None)
    return ranked.sort("rank").limit(options.num_styles).drop_columns(["rank"])


def _with_own_class_draws(samples: ray.data.Dataset, options: GenerateOptions) -> ray.data.Dataset:
    """The samples to draw, each with its `draws`, in file order. The choice is made here, on the
    driver, from the style ids and labels alone (16 bytes a sample; the split is read for them
    once more, which costs seconds where drawing costs minutes)."""
    batches = list(samples.select_columns(["style_id", "label"]).iter_batches(batch_size=None, batch_format="numpy"))
    style_ids = np.concatenate([b["style_id"] for b in batches]) if batches else np.empty(0, np.int64)
    labels = np.concatenate([b["label"] for b in batches]) if batches else np.empty(0, np.int64)
    draws = own_class_draws(style_ids, labels, options, f"split {options.split!r} of the given data")
    order = np.argsort(style_ids, kind="stable")
    return samples.map_batches(_keep_drawn, fn_args=(style_ids[order], draws[order]), batch_format="numpy", batch_size=None)


def _keep_drawn(batch: dict, sorted_ids: np.ndarray, sorted_draws: np.ndarray) -> dict:
    draws = sorted_draws[np.searchsorted(sorted_ids, batch["style_id"])]
    keep = draws > 0
    return {**{k: v[keep] for k, v in batch.items()}, "draws": draws[keep]}


def _with_style_id(batch: dict) -> dict:
    return {**batch, "style_id": order_keys(batch["source"], batch["row"])}


def _with_rank(batch: dict, seed: int) -> dict:
    # A random but reproducible order of the styles; ties are impossible in practice (64-bit).
    return {**batch, "rank": mix64(batch["style_id"], seed).view(np.int64)}


def run_generation(model_path: str, sources: DataSources, out: str, options: GenerateOptions = GenerateOptions()) -> dict:
    """Generate the data set into OUT (a folder or URI) and commit it; returns the manifest."""
    model, metadata = load_checked_model(model_path)
    given = {k: getattr(options, k) for k in ("sharpness", "class_shift", "detail_sharpness") if getattr(options, k) is not None}
    try:
        drawing = replace(Drawing.from_metadata(metadata), **given)  # the model's recipe, unless told otherwise
    except ValueError as exc:
        raise DataError(str(exc)) from None
    inputs = (model_path, *options.style_images, *source_locations(sources))
    with outputs.dataset_output(out, inputs) as dataset:  # checked, writable and locked before Ray starts
        workers = start_ray_for_actors(options.num_workers, options.use_gpu)
        with _preserve_order():  # identical files for identical inputs
            return _generate(model, metadata, drawing, model_path, sources, dataset, options, workers)


@contextlib.contextmanager
def _preserve_order():
    options = ray.data.DataContext.get_current().execution_options
    before, options.preserve_order = options.preserve_order, True
    try:
        yield
    finally:
        options.preserve_order = before


def _generate(model, metadata, drawing, model_path, sources, dataset: outputs.DatasetRun, options, workers) -> dict:
    styles = style_samples(sources, options).materialize()
    total_styles = styles.count()
    where = "the given style images" if options.style_images else f"split {options.split!r} of the given data"
    if total_styles == 0:
        raise DataError(f"no style samples: {where} holds no images")
    if not options.own_class and options.num_styles is not None and total_styles < options.num_styles:  # never fewer styles than asked, silently
        raise DataError(f"--num-styles {options.num_styles:,}: {where} holds {total_styles:,} style samples; ask for at most that many, or leave --num-styles out for all of them")
    drawn = map_with_model(styles, _Drawer, model_path, (options, drawing), workers, options.use_gpu, options.styles_per_batch)
    generated = drawn.map_batches(_with_image, batch_format="pyarrow", batch_size=None)

    total = int(styles.sum("draws")) if options.own_class else total_styles * options.per_style
    per_block = options.styles_per_batch * options.per_style  # rows of one model call
    sink = _ParquetFiles(dataset.prefix, per_block * max(1, options.rows_per_file // per_block))
    _write_with_progress(generated, sink, total)
    files, file_rows, file_bytes = zip(*sink.written)
    if sum(file_rows) != total:
        raise RuntimeError(f"wrote {sum(file_rows)} rows, expected {total}")
    manifest = {
        "rows": total,
        "styles": total_styles,
        "file_rows": list(file_rows),
        "columns": list(_FEATURES),
        "model": storage.absolute(model_path),
        "model_config": model.config.to_dict(),
        "model_metadata": {k: metadata[k] for k in ("run_name", "epoch", "train_config", "data") if k in metadata},
        "data": sources.describe() if not options.style_images else {"style_images": list(options.style_images)},
        "options": {k: v for k, v in asdict(options).items() if k not in ("labels", "num_workers", "use_gpu", "styles_per_batch", "rows_per_file")},
        "drawing": drawing.to_dict(),
        "seed": options.seed,
        "sheet": SHEET,
    }
    sheet = _sheet_png(_read_sheet([storage.join(dataset.prefix, name) for name in files], options), options)
    card = _card(manifest, dataset.data_dir, sum(file_bytes))
    return dataset.commit(list(files), manifest, {SHEET: sheet, CARD: card.encode()})


def _write_with_progress(generated: ray.data.Dataset, sink: _ParquetFiles, total: int) -> None:
    """Runs the write (the workers write the files) and prints progress from the files written so
    far, until it ends."""
    failure: list[BaseException] = []

    def write():
        try:
            generated.write_datasink(sink)
        except BaseException as exc:  # raised again in the driver's thread below
            failure.append(exc)

    started = time.perf_counter()
    writer = threading.Thread(target=write, name="handvae-write", daemon=True)
    writer.start()
    while True:
        writer.join(_PROGRESS_EVERY_S)
        if not writer.is_alive():
            break
        files, _ = storage.list_tree(sink.prefix)
        done = min(total, sum(name.endswith(".parquet") for name in files) * sink.rows_per_file)
        _print_progress(done, total, time.perf_counter() - started)
    if failure:
        raise failure[0]
    _print_progress(total, total, time.perf_counter() - started)


def _print_progress(done: int, total: int, seconds: float) -> None:
    rate = done / seconds
    if done == 0:
        speed = ""  # starting: Ray's workers, reading the styles, the model actors
    elif done < total:
        speed = f", {rate:,.0f}/s, {_duration((total - done) / rate)} left"
    else:
        speed = f", {rate:,.0f}/s, in {_duration(seconds)}"
    print(f"generated {done:,}/{total:,} ({done / total:.0%}){speed}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _read_sheet(files: list[str], options: GenerateOptions) -> list[list[np.ndarray]]:
    """The contact sheet's rows, read back from the first files written: sample 0 of each of the
    first SHEET_STYLES styles (every-style), or one drawing of each character per row, the first
    SHEET_STYLES of each (own-class)."""
    cells: dict[int, list[np.ndarray]] = {}  # style id -> its characters, or label -> its drawings
    columns, keep = (["label", "pixels"], _keep_own_class) if options.own_class else (["style_id", "sample", "pixels"], _keep_for_sheet)
    tables = (pa.Table.from_batches([batch]) for path in files for batch in _batches(path, columns))
    next((table for table in tables if keep(table, cells, options)), None)  # read until the sheet is complete
    if not options.own_class:
        return list(cells.values())
    rows = min(len(cells.get(label, ())) for label in options.labels)
    return [[cells[label][row] for label in options.labels] for row in range(rows)]


def _batches(path: str, columns: list[str]):
    with storage.open_input_file(path) as f:
        yield from pq.ParquetFile(f).iter_batches(batch_size=4096, columns=columns)


def _keep_for_sheet(table: pa.Table, sheet: dict, options: GenerateOptions) -> bool:
    """Adds the table's sample-0 images of the sheet's styles; True once the sheet is complete."""
    first = table.filter(pa.compute.equal(table["sample"], 0)).select(["style_id", "pixels"])
    for style_id, pixels in zip(first["style_id"].to_pylist(), first["pixels"]):
        if style_id in sheet or len(sheet) < SHEET_STYLES:
            sheet.setdefault(style_id, []).append(_image(pixels))
    return len(sheet) == SHEET_STYLES and all(len(cells) == options.images_per_draw for cells in sheet.values())


def _keep_own_class(table: pa.Table, drawings: dict, options: GenerateOptions) -> bool:
    """Adds the table's first drawings of each character; True once every character has SHEET_STYLES."""
    for label, pixels in zip(table["label"].to_pylist(), table["pixels"]):
        if len(drawings.setdefault(label, [])) < SHEET_STYLES:
            drawings[label].append(_image(pixels))
    return all(len(drawings.get(label, ())) == SHEET_STYLES for label in options.labels)


def _image(pixels: pa.Scalar) -> np.ndarray:
    return np.frombuffer(pixels.as_py(), np.uint8).reshape(IMAGE_SIDE, -1)


def _sheet_png(rows: list[list[np.ndarray]], options: GenerateOptions) -> bytes:
    from handvae import plots  # the driver's only: matplotlib would add 0.6 s of CPU to each _Drawer actor's start

    if options.text is not None:
        symbols = options.text
        cells = np.stack([np.stack(np.split(line[0], len(symbols), axis=1)) for line in rows])
    else:
        symbols = options.chars
        cells = np.stack([np.stack(row) for row in rows])
    if options.own_class:
        row_names = [f"draw {i + 1}" for i in range(len(rows))]
        title = f"{len(symbols)} characters, each drawn in styles of its own real samples (randomness {options.randomness}, seed {options.seed})"
    else:
        row_names = [f"style {i + 1}" for i in range(len(rows))]
        title = f"{len(rows)} styles x {len(symbols)} characters (randomness {options.randomness}, seed {options.seed})"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, SHEET)
        plots.character_sheet(cells, list(symbols), row_names, path, title)
        with open(path, "rb") as f:
            return f.read()


_CREDITS = """\
The model that drew these characters learnt handwriting from (handvae's data sources; see the model's
training data above):
- **MNIST** (the digits), by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, licensed under
  CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/).
- **A-Z Handwritten Alphabets** (the letters), the Kaggle data set by Sachin Patel
  (https://www.kaggle.com/datasets/sachinpatel21/az-handwritten-alphabets-in-csv-format), derived
  from NIST Special Database 19 (https://www.nist.gov/srd/nist-special-database-19); see its page
  for its terms.

The generated images derive from these data sets through the model: their terms apply."""


def _card(manifest: dict, data_dir: str, num_bytes: int) -> str:
    """The Hugging Face data set card: YAML declaring the files and typed features, then what made
    the data and how to read it."""
    header = {
        "pretty_name": "handvae generated handwriting",
        "license": "other",  # the source data's terms apply (below)
        "tags": ["handwriting", "synthetic", "image-classification"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": f"{data_dir}/train-*.parquet"}]}],
        "dataset_info": {
            "features": _card_features(),
            "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": manifest["rows"]}],
        },
    }
    o, meta = manifest["options"], manifest["model_metadata"]
    what = f"the line `{o['text']}`" if o["text"] is not None else f"the characters `{o['chars']}`"
    styles_from = (f"{len(o['style_images'])} image files of a person's handwriting" if o["style_images"]
                   else f"the {o['split']} split of {json.dumps(manifest['data'])}")
    recipe = json.dumps(meta.get("train_config"), indent=2) if "train_config" in meta else '"not recorded in the model file"'
    if o["pairing"] == "own-class":
        per_char = f"{o['num_styles']:,} drawings of each" if o["num_styles"] else "each sample drawn once"
        detail = " and detail code" if manifest["model_config"]["detail_latent"] else ""
        drawn_how = (f"{what}, each drawn in the handwriting styles of real samples of that same character, {per_char}, "
                     f"from {manifest['styles']:,} style samples ({o['samples_per_style']} draw(s) from a style's posterior{detail} per use)")
        counts = f"{manifest['rows']:,} rows from {manifest['styles']:,} style samples"
    else:
        per_draw = 1 if o["text"] is not None else len(o["chars"])
        drawn_how = (f"{what} drawn in the handwriting style of each of {manifest['styles']:,} style samples, "
                     f"{o['samples_per_style']} draw(s) from each style's posterior")
        counts = f"{manifest['rows']:,} rows = {manifest['styles']:,} styles x {o['samples_per_style']} draw(s) x {per_draw} image(s)"
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---
# Generated handwriting: {manifest['rows']:,} images in {manifest['styles']:,} styles

Written by `handvae generate`: {drawn_how} ({styles_from}), seed {manifest['seed']}.
The same model, inputs and seed give the same files.

![contact sheet: the first styles, one per row](sheet.png)

## Columns

| column | type | what |
|---|---|---|
| `image` | Image (PNG) | the generated character (or line), white ink on black, 28 px high |
| `label` | ClassLabel `0`-`9`, `A`-`Z` | its class 0-35 (-1 for a line of text) |
| `char` | string | the character (or the line) |
| `pixels` | binary | the same image as raw uint8 bytes, row-major: `np.frombuffer(b, np.uint8).reshape(28, -1)` |
| `style_id`, `source`, `row` | int64, string, int64 | the style sample: its key, file and row (CSV line / IDX record) |
| `sample` | int16 | which draw from the style's posterior |

## How it was made

- Model: `{manifest['model']}` (run {meta.get('run_name', 'unknown')}, epoch {meta.get('epoch', 'unknown')}),
  trained on {json.dumps(meta.get('data', 'data not recorded in the model file'))}.
- Drawing: {json.dumps(manifest['drawing'])}; randomness {o['randomness']}, average {o['average']}.
- Counts: {counts}, in {len(manifest['file_rows'])} parquet file(s).
- Recipe (the model's training config):

```json
{recipe}
```

## Reading it

The files of this version are `{data_dir}/train-*.parquet` (also listed in `manifest.json`, with
their row counts); `_SUCCESS` marks the folder complete. Nothing else under `data/` is part of it.

```python
datasets.load_dataset("OUT", split="train")             # this card: Image and ClassLabel columns
pd.read_parquet("OUT/{data_dir}")
pyarrow.dataset.dataset("OUT/{data_dir}")
ray.data.read_parquet("OUT/{data_dir}")
duckdb.sql("SELECT * FROM 'OUT/{data_dir}/*.parquet'")
polars.read_parquet("OUT/{data_dir}/*.parquet")
```

## Source data and licences

{_CREDITS}
"""
