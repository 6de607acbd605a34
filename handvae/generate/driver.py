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
  `handvae score`; docs/results/recipes.md);
- every-style (the default for --style-images and --text): every character asked for in every
  style, the full set 0-9 A-Z by default (the seed's last cell), a subset (--chars), or a line of
  text (--text): alphabets in one hand.
Ray Data tasks PNG-encode them and write the parquet files (`handvae.generate.worker`); the driver
(this module) plans, prints progress, and commits (handvae.formats.dataset_output) with the
contact sheet and the card of `handvae.generate.reports`.

OUT is laid out as a Hugging Face Hub parquet data set (`handvae.formats.dataset_folder`):
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
    label_probs  fixed_size_list<float32>[36]  the model's classifier's probabilities of the classes
                       for this image: teacher soft labels (--text: null)
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
import os
import sys
import threading
import time
from dataclasses import asdict, replace

import numpy as np
import ray
import ray.data
from ray.data.block import BlockAccessor

from handvae import storage
from handvae.data.images import load_style_images
from handvae.data.records import order_keys
from handvae.data.sources import DataSources, keyed_tensors, read_split, source_locations, to_tensors
from handvae.errors import DataError
from handvae.formats import dataset_output
from handvae.formats.dataset_folder import CARD, FEATURES, SHEET
from handvae.generate.choices import blend_draws, own_class_draws
from handvae.generate.options import GenerateOptions
from handvae.generate.reports import card, read_rows, read_sheet, sheet_png
from handvae.generate.worker import Drawer, ParquetFiles, with_image
from handvae.inference import RowCounter, load_checked_model, map_with_model, start_ray_for_actors
from handvae.model.drawing import Drawing
from handvae.rng import mix64
from handvae.runtime import hiding_actor_restart_notice, wait_for_free_cpus
from handvae.score.novelty import measure_novelty

_PROGRESS_EVERY_S = 5.0


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
    if options.blend:
        return samples  # all of them: `_blends` chooses the draws and the partners
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
    return samples.map_batches(
        _keep_drawn, fn_args=(style_ids[order], draws[order]), batch_format="numpy", batch_size=None
    )


_BLEND_BATCHES_PER_BLOCK = 16  # blocks of a few model calls each, so that every model actor gets some


def _blends(samples: ray.data.Dataset, options: GenerateOptions) -> tuple[ray.data.Dataset, int]:
    """One row per blend (`blend_draws`): the style sample's columns, its partners' images and the
    shares; and the number of style samples drawn. Planned here, on the driver, with the split's
    images in memory (784 bytes a sample) and the rows built here (about 2.4 KB a character: 170 MB
    for 72,000)."""
    batches = list(samples.iter_batches(batch_size=None, batch_format="numpy"))
    if not batches:
        raise DataError(f"no style samples: split {options.split!r} of the given data holds no images")
    columns = {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}
    draws = own_class_draws(
        columns["style_id"], columns["label"], options, f"split {options.split!r} of the given data"
    )
    index, number, partners, shares = blend_draws(columns["style_id"], columns["label"], draws, options.seed)
    rows = {
        **{name: values[index] for name, values in columns.items()},
        "sample": number.astype(np.int16),
        "partners": columns["image"][partners],
        "shares": shares.astype(np.float32),
    }
    step = options.styles_per_batch * _BLEND_BATCHES_PER_BLOCK
    blocks = [
        BlockAccessor.batch_to_block({k: v[s : s + step] for k, v in rows.items()}) for s in range(0, len(index), step)
    ]
    return ray.data.from_arrow(blocks), int(np.count_nonzero(draws))


def _keep_drawn(batch: dict, sorted_ids: np.ndarray, sorted_draws: np.ndarray) -> dict:
    draws = sorted_draws[np.searchsorted(sorted_ids, batch["style_id"])]
    keep = draws > 0
    return {**{k: v[keep] for k, v in batch.items()}, "draws": draws[keep]}


def _with_style_id(batch: dict) -> dict:
    return {**batch, "style_id": order_keys(batch["source"], batch["row"])}


def _with_rank(batch: dict, seed: int) -> dict:
    # A random but reproducible order of the styles; ties are impossible in practice (64-bit).
    return {**batch, "rank": mix64(batch["style_id"], seed).view(np.int64)}


NOVELTY_SAMPLE = 20_000
"""Rows of a generated set, evenly spaced, that the card's novelty is measured on: a million-row
set is not read back whole, and the medians of a sample this size are the whole set's to the
second decimal (measured on the default's 72,000-row set: docs/generation.md)."""


def run_generation(
    model_path: str, sources: DataSources, out: str, options: GenerateOptions = GenerateOptions()
) -> dict:
    """Generate the data set into OUT (a folder or URI) and commit it; returns the manifest."""
    model, metadata = load_checked_model(model_path)
    given = {
        k: getattr(options, k)
        for k in ("sharpness", "class_shift", "detail_sharpness")
        if getattr(options, k) is not None
    }
    try:
        drawing = replace(Drawing.from_metadata(metadata), **given)  # the model's recipe, unless told otherwise
    except ValueError as exc:
        raise DataError(str(exc)) from None
    inputs = (model_path, *options.style_images, *source_locations(sources))
    with dataset_output.dataset_output(out, inputs) as dataset:  # checked, writable and locked before Ray starts
        reached = {
            "--model": model_path,
            "--out": out,
            "--letters-csv": sources.letters_csv,
            "--prepared": sources.prepared_dir,
        }
        workers = start_ray_for_actors(options.num_workers, options.use_gpu, reached)
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


def _generate(
    model, metadata, drawing, model_path, sources, dataset: dataset_output.DatasetRun, options, workers
) -> dict:
    if options.blend:  # built on the driver, materialized already: one row per blend, counted there
        styles, total_styles = _blends(style_samples(sources, options), options)
    else:
        styles = style_samples(sources, options).materialize()
        total_styles = styles.count()
    where = "the given style images" if options.style_images else f"split {options.split!r} of the given data"
    if total_styles == 0:
        raise DataError(f"no style samples: {where} holds no images")
    if (
        not options.own_class and options.num_styles is not None and total_styles < options.num_styles
    ):  # never fewer styles than asked, silently
        raise DataError(
            f"--num-styles {options.num_styles:,}: {where} holds {total_styles:,} style samples; ask for at most that many, or leave --num-styles out for all of them"
        )
    counter = RowCounter.remote()
    drawn = map_with_model(
        styles, Drawer, model_path, (options, drawing, counter), workers, options.use_gpu, options.styles_per_batch
    )
    generated = drawn.map_batches(with_image, batch_format="pyarrow", batch_size=None)
    if options.blend:
        total = styles.count()
    else:
        total = int(styles.sum("draws")) if options.own_class else total_styles * options.per_style
    per_block = options.styles_per_batch * options.per_style  # rows of one model call
    sink = ParquetFiles(dataset.prefix, per_block * max(1, options.rows_per_file // per_block))
    with hiding_actor_restart_notice():
        _write_with_progress(generated, sink, total, counter)
    files, file_rows, file_bytes = zip(*sink.written)
    if sum(file_rows) != total:
        raise RuntimeError(f"wrote {sum(file_rows)} rows, expected {total}")
    manifest = {
        "rows": total,
        "styles": total_styles,
        "file_rows": list(file_rows),
        "columns": list(FEATURES),
        "model": storage.absolute(model_path),
        "model_config": model.config.to_dict(),
        "model_metadata": {k: metadata[k] for k in ("run_name", "epoch", "train_config", "data") if k in metadata},
        "data": sources.describe() if not options.style_images else {"style_images": list(options.style_images)},
        "options": {
            k: v
            for k, v in asdict(options).items()
            if k not in ("labels", "num_workers", "use_gpu", "styles_per_batch", "rows_per_file")
        },
        "drawing": drawing.to_dict(),
        "seed": options.seed,
        "sheet": SHEET,
    }
    written = [storage.join(dataset.prefix, name) for name in files]
    novelty = _novelty(sources, options, written, total)
    if novelty:
        manifest["novelty"] = novelty
    sheet = sheet_png(read_sheet(written, options), options)
    readme = card(manifest, dataset.data_dir, sum(file_bytes))
    return dataset.commit(list(files), manifest, {SHEET: sheet, CARD: readme.encode()})


def _novelty(sources: DataSources, options: GenerateOptions, files: list[str], rows: int) -> dict | None:
    """The data set's novelty (`handvae.score.novelty`, what `handvae score` reports) against the
    real training and test splits of the data its styles came from, on NOVELTY_SAMPLE of its rows
    evenly spaced; None for style images and lines of text, which have no records to compare with."""
    if options.style_images or options.text is not None:
        return None
    train, test = keyed_tensors(read_split(sources, "train")), to_tensors(read_split(sources, "test"))
    if not len(train[1]) or not len(test[1]):
        return None
    sample = read_rows(files, max(1, -(-rows // NOVELTY_SAMPLE)))
    figures = measure_novelty(sample, train, test)
    return {"sampled_rows": len(sample[1]), **{part: f.to_dict() for part, f in figures.items()}}


def _write_with_progress(generated: ray.data.Dataset, sink: ParquetFiles, total: int, counter) -> None:
    """Runs the write (the workers write the files) and prints progress from the rows the model
    actors have drawn so far (`counter`, a `handvae.inference.RowCounter`), until it ends."""
    failure: list[BaseException] = []

    def write():
        try:
            generated.write_datasink(sink)
        except BaseException as exc:  # raised again in the driver's thread below
            failure.append(exc)

    wait_for_free_cpus()
    started = time.perf_counter()
    writer = threading.Thread(target=write, name="handvae-write", daemon=True)
    writer.start()
    while True:
        writer.join(_PROGRESS_EVERY_S)
        if not writer.is_alive():
            break
        try:
            done = min(total, ray.get(counter.total.remote(), timeout=_PROGRESS_EVERY_S))
        except ray.exceptions.GetTimeoutError:  # a busy cluster: the next line will tell
            continue
        if done < total:  # all drawn: the last file is being written, and the line after the write says so
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
