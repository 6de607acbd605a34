"""Batch generation job: encode style samples with Ray Data and write generated characters to parquet.

    handvae generate --model runs/NAME/model.pt --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --split test \
        --num-styles 100 --samples-per-style 2 --out generated/NAME

Styles come from a split of the readers' data (any data flags) or from image files of a person's
own handwriting (--style-images). A pool of model actors (one model build per actor, CPU or GPU)
encodes each style sample and decodes, in that style, every character asked for: the full set
0-9 A-Z by default (the seed's last cell), a subset (--chars), or a line of text (--text).

Output, one row per generated character (or per line with --text), in OUT/part-*.parquet:
    style_id   int64   the style sample's key, from its (source, row); stable across runs
    source     string  the file the style sample came from
    row        int64   where in that file (1-based CSV line, 0-based IDX record, 0 for an image file)
    sample     int16   which draw from the style's posterior (0..samples_per_style-1)
    char       string  the character (--text: the whole line)
    label      int16   its class 0-35 (--text: -1)
    pixels     binary  the image, row-major uint8, white ink on black: 28x28 (--text: 28 x 28*len)
    png        binary  the same image as PNG bytes
Both image columns, because they serve two readers: `pixels` is numpy's (np.frombuffer(...)
.reshape(28, -1)) and reads back fast; `png` is what image tools and data set hubs take as is.

OUT also holds sheet.png (styles x characters, for a person to look at), _manifest.json (model,
inputs, options, row count) and _SUCCESS, written last. Read it back with
`ray.data.read_parquet(OUT)`, `pyarrow.dataset.dataset(OUT, format="parquet",
exclude_invalid_files=True)`, or pandas file by file (`pd.read_parquet(OUT)` alone would try to
read sheet.png as parquet). The run writes to OUT.tmp-*, and renames
it to OUT when complete: a re-run replaces OUT whole, and a killed run leaves only a temporary
folder that the next run removes. The same model, inputs and seed give identical files.
"""

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
import torch
from ray.data.block import BlockAccessor

from handvae import plots, storage
from handvae.data.datasets import DataSources, order_keys, read_split
from handvae.errors import DataError
from handvae.data.images import encode_pngs, load_style_images
from handvae.data.records import IMAGE_SIDE, mix64
from handvae.config import Drawing
from handvae.inference import ModelActor, load_checked_model, map_with_model, start_ray_for_actors
from handvae.labels import CHARSET
from handvae.styles import draw_in_styles

SUCCESS_MARKER = "_SUCCESS"
MANIFEST = "_manifest.json"  # "_": parquet readers skip it
SHEET = "sheet.png"
SHEET_STYLES = 12  # rows of the contact sheet
_ROWS_PER_FILE = 100_000


@dataclass(frozen=True)
class GenerateOptions:
    chars: str = CHARSET
    """Characters to draw in every style, each of 0-9 and A-Z."""
    text: str | None = None
    """Instead of characters, this line of text (0-9, A-Z and spaces), one image per style and sample."""
    split: str = "test"
    """Which split of the data sources gives the styles."""
    style_images: tuple[str, ...] = ()
    """Image files of a person's handwriting, one character each; used instead of the data sources."""
    num_styles: int | None = None
    """Styles to use, drawn at random (by the seed) from the style samples; all of them by default."""
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
    num_workers: int | None = None
    """Model actors; by default one per CPU but one (one per GPU with use_gpu)."""
    use_gpu: bool = False
    """One GPU per model actor."""
    styles_per_batch: int = 64
    """Style samples per model call."""
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
        for name, low in (("samples_per_style", 1), ("average", 1), ("styles_per_batch", 1), ("seed", 0)):
            if getattr(self, name) < low:
                raise DataError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.num_styles is not None and self.num_styles < 1:
            raise DataError(f"num_styles must be >= 1, got {self.num_styles}")
        if self.num_workers is not None and self.num_workers < 1:
            raise DataError(f"num_workers must be >= 1, got {self.num_workers}")
        if not 0.0 <= self.randomness <= 10.0:
            raise DataError(f"randomness must be between 0 and 10, got {self.randomness}")
        object.__setattr__(self, "labels", tuple(CHARSET.index(c) for c in symbols if c != " "))

    @property
    def images_per_draw(self) -> int:
        """Images drawn from one posterior draw: each character, or the text's one line image."""
        return 1 if self.text is not None else len(self.chars)

    @property
    def per_style(self) -> int:
        """Output rows per style sample."""
        return self.samples_per_style * self.images_per_draw


class _Drawer(ModelActor):
    """Maps a batch of style samples to the characters drawn in their styles."""

    def __init__(self, weights: dict, use_gpu: bool, options: GenerateOptions, drawing: Drawing):
        super().__init__(weights, use_gpu)
        self.options, self.drawing = options, drawing

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        o = self.options
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


def _with_png(table: pa.Table) -> pa.Table:
    """Adds the PNG column. A stage of its own (Ray Data tasks), so that PNG encoding runs beside
    the model actors instead of between their model calls."""
    pixels = table.column("pixels").combine_chunks()
    width = pixels.type.byte_width // IMAGE_SIDE
    images = np.frombuffer(pixels.buffers()[1], np.uint8, count=len(pixels) * pixels.type.byte_width, offset=pixels.offset * pixels.type.byte_width)
    return table.append_column("png", pa.array(encode_pngs(images.reshape(-1, IMAGE_SIDE, width)), pa.binary()))


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
        samples = read_split(sources, options.split).select_columns(["image", "source", "row"])
        samples = samples.map_batches(_with_style_id, batch_format="numpy", batch_size=None)
    if options.num_styles is None:
        return samples  # every style, in the order of the files
    ranked = samples.map_batches(_with_rank, fn_args=(options.seed,), batch_format="numpy", batch_size=None)
    return ranked.sort("rank").limit(options.num_styles).drop_columns(["rank"])


def _with_style_id(batch: dict) -> dict:
    return {**batch, "style_id": order_keys(batch["source"], batch["row"])}


def _with_rank(batch: dict, seed: int) -> dict:
    # A random but reproducible order of the styles; ties are impossible in practice (64-bit).
    return {**batch, "rank": mix64(batch["style_id"], seed).view(np.int64)}


def run_generation(model_path: str, sources: DataSources, out_dir: str, options: GenerateOptions = GenerateOptions()) -> dict:
    """Generate and write OUT whole; returns the manifest."""
    model, metadata = load_checked_model(model_path)
    given = {k: v for k, v in (("sharpness", options.sharpness), ("class_shift", options.class_shift)) if v is not None}
    try:
        drawing = replace(Drawing.from_metadata(metadata), **given)  # the model's recipe, unless told otherwise
    except ValueError as exc:
        raise DataError(str(exc)) from None
    out_dir = _claim_out_dir(out_dir)
    workers = start_ray_for_actors(options.num_workers, options.use_gpu)
    with _preserve_order():  # identical files for identical inputs
        return _generate(model, metadata, drawing, model_path, sources, out_dir, options, workers)


@contextlib.contextmanager
def _preserve_order():
    options = ray.data.DataContext.get_current().execution_options
    before, options.preserve_order = options.preserve_order, True
    try:
        yield
    finally:
        options.preserve_order = before


def _generate(model, metadata, drawing, model_path, sources, out_dir, options, workers) -> dict:
    styles = style_samples(sources, options).materialize()
    total_styles = styles.count()
    if total_styles == 0:
        raise DataError(f"no style samples: split {options.split!r} of the given data holds no images")
    drawn = map_with_model(styles, _Drawer, model_path, (options, drawing), workers, options.use_gpu, options.styles_per_batch)
    generated = drawn.map_batches(_with_png, batch_format="pyarrow", batch_size=None)

    total = total_styles * options.per_style
    with storage.staged_folder(out_dir, marker=SUCCESS_MARKER) as staging:
        sheet = _write_parts(generated, staging, total, options.images_per_draw)
        _draw_sheet(sheet, options, os.path.join(staging, SHEET))
        manifest = {
            "model": os.path.abspath(model_path),
            "model_metadata": {k: metadata.get(k) for k in ("run_name", "epoch") if k in metadata},
            "data": sources.describe() if not options.style_images else {"style_images": list(options.style_images)},
            "options": {k: v for k, v in asdict(options).items() if k not in ("labels", "num_workers", "use_gpu", "styles_per_batch")},
            "drawing": drawing.to_dict(),
            "styles": total_styles,
            "rows": total,
        }
        with open(os.path.join(staging, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
    return manifest


def _write_parts(generated: ray.data.Dataset, staging: str, total: int, cells_per_style: int) -> list[list[np.ndarray]]:
    """Streams the generated rows into parquet files of up to _ROWS_PER_FILE rows, printing progress;
    returns sample 0 of the first SHEET_STYLES styles for the contact sheet."""
    writer, part, in_part, done = None, 0, 0, 0
    started = last_print = time.perf_counter()
    sheet: dict[int, list[np.ndarray]] = {}
    sheet_complete = False
    for table in generated.iter_batches(batch_format="pyarrow", batch_size=None):
        if writer is None or in_part >= _ROWS_PER_FILE:
            if writer:
                writer.close()
            writer = pq.ParquetWriter(os.path.join(staging, f"part-{part:05d}.parquet"), table.schema, compression="zstd")
            part, in_part = part + 1, 0
        writer.write_table(table)
        in_part += table.num_rows
        done += table.num_rows
        if not sheet_complete:
            sheet_complete = _keep_for_sheet(table, sheet, cells_per_style)
        now = time.perf_counter()
        if now - last_print >= 5 or done == total:
            print(f"generated {done:,}/{total:,} ({done / total:.0%}), {done / (now - started):,.0f}/s", file=sys.stderr, flush=True)
            last_print = now
    if writer:
        writer.close()
    if done != total:
        raise RuntimeError(f"generated {done} rows, expected {total}")
    return list(sheet.values())


def _keep_for_sheet(table: pa.Table, sheet: dict, cells_per_style: int) -> bool:
    """Adds the table's sample-0 images of the sheet's styles; True once the sheet is complete."""
    first = table.filter(pa.compute.equal(table["sample"], 0)).select(["style_id", "pixels"])
    for style_id, pixels in zip(first["style_id"].to_pylist(), first["pixels"]):
        if style_id in sheet or len(sheet) < SHEET_STYLES:
            sheet.setdefault(style_id, []).append(np.frombuffer(pixels.as_py(), np.uint8).reshape(IMAGE_SIDE, -1))
    return len(sheet) == SHEET_STYLES and all(len(cells) == cells_per_style for cells in sheet.values())


def _draw_sheet(rows: list[list[np.ndarray]], options: GenerateOptions, path: str) -> None:
    if options.text is not None:
        symbols = options.text
        cells = np.stack([np.stack(np.split(line[0], len(symbols), axis=1)) for line in rows])
    else:
        symbols = options.chars
        cells = np.stack([np.stack(row) for row in rows])
    plots.character_sheet(
        cells, list(symbols), [f"style {i + 1}" for i in range(len(rows))], path,
        f"{len(rows)} styles x {len(symbols)} characters (randomness {options.randomness}, seed {options.seed})",
    )


def _claim_out_dir(out_dir: str) -> str:
    """OUT may be absent, empty, or an earlier output (it is replaced); temporary folders of killed
    runs beside it are removed."""
    if "://" in out_dir:
        raise DataError(f"{out_dir}: generated data sets are written to a local (or mounted shared) folder")
    out_dir = os.path.abspath(out_dir)
    if os.path.isfile(out_dir) or (os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, SUCCESS_MARKER))):
        raise DataError(f"{out_dir}: exists and is not an earlier generation output (no {SUCCESS_MARKER}); choose another --out")
    parent, name = os.path.split(out_dir)
    if os.path.isdir(parent):
        for entry in os.listdir(parent):
            if entry.startswith(f"{name}.tmp-"):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    return out_dir
