"""The generated data set's files for people: the contact sheet (matplotlib) and the data set card.
Driver side only.
"""

import json
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml

from handvae import plots, storage
from handvae.data.records import IMAGE_SIDE
from handvae.formats.dataset_folder import SHEET, card_features, unpack_images
from handvae.generate.options import GenerateOptions
from handvae.score.reports import novelty_markdown

SHEET_STYLES = 12  # rows of the contact sheet


def read_sheet(files: list[str], options: GenerateOptions) -> list[list[np.ndarray]]:
    """The contact sheet's rows, read back from the first files written: sample 0 of each of the
    first SHEET_STYLES styles (every-style), or one drawing of each character per row, the first
    SHEET_STYLES of each (own-class)."""
    cells: dict[int, list[np.ndarray]] = {}  # style id -> its characters, or label -> its drawings
    columns, keep = (
        (["label", "pixels"], _keep_own_class)
        if options.own_class
        else (["style_id", "sample", "pixels"], _keep_for_sheet)
    )
    tables = (pa.Table.from_batches([batch]) for path in files for batch in _batches(path, columns))
    next((table for table in tables if keep(table, cells, options)), None)  # read until the sheet is complete
    if not options.own_class:
        return list(cells.values())
    rows = min(len(cells.get(label, ())) for label in options.labels)
    return [[cells[label][row] for label in options.labels] for row in range(rows)]


def read_rows(files: list[str], stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every stride-th row of the files, in order: images uint8 (N, 28, 28), labels (N,) and
    style sample keys (N,) int64."""
    images, labels, keys, position = [], [], [], 0
    for path in files:
        for batch in _batches(path, ["pixels", "label", "style_id"]):
            first = -position % stride
            picked = pa.Table.from_batches([batch]).take(np.arange(first, batch.num_rows, stride))
            position += batch.num_rows
            images.append(unpack_images(picked.column("pixels")).copy())
            labels.append(picked.column("label").to_numpy())
            keys.append(picked.column("style_id").to_numpy())
    return (
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(np.concatenate(labels).astype(np.int64)),
        torch.from_numpy(np.concatenate(keys)),
    )


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


def sheet_png(rows: list[list[np.ndarray]], options: GenerateOptions) -> bytes:
    if options.text is not None:
        symbols = options.text
        cells = np.stack([np.stack(np.split(line[0], len(symbols), axis=1)) for line in rows])
    else:
        symbols = options.chars
        cells = np.stack([np.stack(row) for row in rows])
    if options.own_class:
        row_names = [f"draw {i + 1}" for i in range(len(rows))]
        how = (
            "blended from two of its own real samples ("
            if options.blend
            else f"drawn in styles of its own real samples (randomness {options.randomness}, "
        )
        title = f"{len(symbols)} characters, each {how}seed {options.seed})"
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


def novelty_section(manifest: dict) -> str:
    """The card's novelty, where the manifest has one (styles from a data split)."""
    if "novelty" not in manifest:
        return ""
    note = (
        f" Measured when the set was written, against the training and test splits of the data its styles came"
        f" from, on {manifest['novelty']['sampled_rows']:,} of its rows, evenly spaced; `handvae score` gives the"
        f" same figures for the whole set, beside how much it adds to real data."
    )
    parts = {k: v for k, v in manifest["novelty"].items() if k != "sampled_rows"}
    return novelty_markdown(parts, note) + "\n"


def card(manifest: dict, data_dir: str, num_bytes: int) -> str:
    """The Hugging Face data set card: YAML declaring the files and typed features, then what made
    the data and how to read it."""
    header = {
        "pretty_name": "handvae generated handwriting",
        "license": "other",  # the source data's terms apply (below)
        "tags": ["handwriting", "synthetic", "image-classification"],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": f"{data_dir}/train-*.parquet"}]}
        ],
        "dataset_info": {
            "features": card_features(),
            "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": manifest["rows"]}],
        },
    }
    o, meta = manifest["options"], manifest["model_metadata"]
    what = f"the line `{o['text']}`" if o["text"] is not None else f"the characters `{o['chars']}`"
    styles_from = (
        f"{len(o['style_images'])} image files of a person's handwriting"
        if o["style_images"]
        else f"the {o['split']} split of {json.dumps(manifest['data'])}"
    )
    recipe = (
        json.dumps(meta.get("train_config"), indent=2) if "train_config" in meta else '"not recorded in the model file"'
    )
    counts = f"{manifest['rows']:,} rows from {manifest['styles']:,} style samples"  # each drawn as its own class
    if o["pairing"] == "blend":
        per_char = f"{o['num_styles']:,} of each" if o["num_styles"] else "one for each sample"
        drawn_how = (
            f"{what}, each drawn from the codes of two real samples of that same character blended (a writer who is "
            f"neither; the surer of two blends by the model's classifier), {per_char}, from {manifest['styles']:,} style samples"
        )
    elif o["pairing"] == "own-class":
        per_char = f"{o['num_styles']:,} drawings of each" if o["num_styles"] else "each sample drawn once"
        detail = " and detail code" if manifest["model_config"]["detail_latent"] else ""
        drawn_how = (
            f"{what}, each drawn in the handwriting styles of real samples of that same character, {per_char}, "
            f"from {manifest['styles']:,} style samples ({o['samples_per_style']} draw(s) from a style's posterior{detail} per use)"
        )
    else:
        per_draw = 1 if o["text"] is not None else len(o["chars"])
        drawn_how = (
            f"{what} drawn in the handwriting style of each of {manifest['styles']:,} style samples, "
            f"{o['samples_per_style']} draw(s) from each style's posterior"
        )
        counts = f"{manifest['rows']:,} rows = {manifest['styles']:,} styles x {o['samples_per_style']} draw(s) x {per_draw} image(s)"
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---
# Generated handwriting: {manifest["rows"]:,} images in {manifest["styles"]:,} styles

Written by `handvae generate`: {drawn_how} ({styles_from}), seed {manifest["seed"]}.
The same model, inputs and seed give the same files.

![contact sheet: the first styles, one per row](sheet.png)

## Columns

| column | type | what |
|---|---|---|
| `image` | Image (PNG) | the generated character (or line), white ink on black, 28 px high |
| `label` | ClassLabel `0`-`9`, `A`-`Z` | its class 0-35 (-1 for a line of text) |
| `label_probs` | list of 36 float32 | the model's classifier's probability of each class 0-35 for this image: soft labels to train with, or to drop draws no class claims confidently (null for a line of text) |
| `char` | string | the character (or the line) |
| `pixels` | binary | the same image as raw uint8 bytes, row-major: `np.frombuffer(b, np.uint8).reshape(28, -1)` |
| `style_id`, `source`, `row` | int64, string, int64 | the style sample: its key, file and row (CSV line / IDX record) |
| `sample` | int16 | which draw from the style's posterior |

## How it was made

- Model: `{manifest["model"]}` (run {meta.get("run_name", "unknown")}, epoch {meta.get("epoch", "unknown")}),
  trained on {json.dumps(meta.get("data", "data not recorded in the model file"))}.
- Drawing: {json.dumps(manifest["drawing"])}; randomness {o["randomness"]}, average {o["average"]}.
- Counts: {counts}, in {len(manifest["file_rows"])} parquet file(s).
- Recipe (the model's training config):

```json
{recipe}
```

{novelty_section(manifest)}## Reading it

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
