"""The Kaggle "A-Z Handwritten Alphabets" CSV: label 0-25 (A-Z) then 784 pixels 0-255 per line.

The real file has no header line; a copy re-saved by pandas starts with "0,0.1,0.2,...". A first
line of integers is data. The file is cut at line boundaries into byte ranges (`plan_csv`) that
read tasks parse independently (`read_chunk`), so a 700 MB file is never held whole and many
workers share it. Pure pyarrow/numpy; the Ray wiring is in `handvae.data.datasets`.
"""

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from handvae.errors import DataError
from handvae.data.records import IMAGE_PIXELS, Batch, letters_split, make_batch, require_file, resolve_path
from handvae.labels import NUM_DIGITS, NUM_LETTERS

NUM_FIELDS = 1 + IMAGE_PIXELS
EXPECTED = f"{NUM_FIELDS} comma-separated integers: a label 0-{NUM_LETTERS - 1} (A-Z) then {IMAGE_PIXELS} pixels 0-255"
_SCAN_BYTES = 8 << 20
_HEAD_BYTES = 64 << 10
_INTEGER = re.compile(rb'\s*"?-?\d+"?\s*')  # what pyarrow accepts as an integer field
_COLUMN_NAMES = [f"c{i}" for i in range(NUM_FIELDS)]


@dataclass(frozen=True)
class CsvChunk:
    """A byte range [start, end) of whole lines."""

    start: int
    end: int
    first_line: int
    """1-based line number of the range's first line."""
    first_data_row: int
    """0-based index among data rows (the header excluded) of the range's first data line."""
    skip_header: bool
    """The range starts with the header line, which is not data."""


@dataclass(frozen=True)
class CsvPlan:
    path: str
    """As the user gave it (local path or URI); errors name it."""
    has_header: bool
    num_data_rows: int
    chunks: tuple[CsvChunk, ...]


def default_chunk_bytes(file_size: int) -> int:
    """About 16 ranges for a small file, 16 MB ranges (~8.5k rows) for a large one: on the full
    Kaggle file, 6% less peak memory than 32 MB ranges at the same speed (benchmarks/ingest.py)."""
    return int(min(16 << 20, max(256 << 10, -(-file_size // 16))))


def plan_csv(path: str, chunk_bytes: int | None = None) -> CsvPlan:
    """One sequential scan: find the header, cut ranges at line ends, count the lines before each."""
    fs, fs_path = resolve_path(path)
    size = require_file(fs, fs_path, "letters CSV")
    with fs.open_input_stream(fs_path, compression=None) as stream:
        head = stream.read(_HEAD_BYTES)
    if not head.strip():
        raise DataError(f"{path}: the letters CSV has no data (expected lines of {EXPECTED})")
    if b"\n" not in head and size > len(head):
        raise DataError(f"{path}, line 1: longer than {_HEAD_BYTES} bytes (expected {EXPECTED})")
    has_header = _is_header(head.split(b"\n", 1)[0], path)
    chunk_bytes = chunk_bytes or default_chunk_bytes(size)

    starts = [(0, 0)]  # (byte offset of a range, newlines before it)
    newlines, pos, last_byte = 0, 0, b"\n"
    with fs.open_input_stream(fs_path, compression=None) as stream:
        while buf := stream.read(_SCAN_BYTES):
            counted = 0
            while (search_from := max(starts[-1][0] + chunk_bytes - pos, counted)) < len(buf):
                end_of_line = buf.find(b"\n", search_from)
                if end_of_line < 0:
                    break
                newlines += buf.count(b"\n", counted, end_of_line + 1)
                counted = end_of_line + 1
                if pos + counted < size:
                    starts.append((pos + counted, newlines))
            newlines += buf.count(b"\n", counted)
            pos += len(buf)
            last_byte = buf[-1:]
    num_lines = newlines + (last_byte != b"\n")

    chunks = []
    for index, (start, lines_before) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else size
        skip_header = has_header and start == 0
        chunks.append(
            CsvChunk(
                start=start,
                end=end,
                first_line=lines_before + 1 + skip_header,
                first_data_row=lines_before + skip_header - has_header,
                skip_header=skip_header,
            )
        )
    # Provenance names the file itself: the absolute path, or the URI as given.
    source = path if "://" in path else fs_path
    return CsvPlan(path=source, has_header=has_header, num_data_rows=num_lines - has_header, chunks=tuple(chunks))


def read_chunk(plan: CsvPlan, chunk: CsvChunk, split_seed: int, test_fraction: float) -> Batch:
    """Parse one range into records; any bad line raises a DataError naming its line."""
    fs, fs_path = resolve_path(plan.path)
    with fs.open_input_file(fs_path) as f:
        data = f.read_at(chunk.end - chunk.start, chunk.start)
    if chunk.skip_header:
        data = data[data.find(b"\n") + 1 :]
    if not data:
        return _empty_batch(plan.path)
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=_COLUMN_NAMES, use_threads=False),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            # No null spellings: an empty field is an error, not a missing pixel.
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.uint8() for name in _COLUMN_NAMES}, null_values=[], strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        _raise_first_bad_line(plan.path, chunk, data, fallback=str(exc))
    letters = table.column(0).to_numpy()
    bad = np.flatnonzero(letters >= NUM_LETTERS)
    if bad.size:
        raise DataError(
            f"{plan.path}, line {chunk.first_line + bad[0]}: label {letters[bad[0]]} is outside 0-{NUM_LETTERS - 1} (expected {EXPECTED})"
        )
    images = np.empty((table.num_rows, IMAGE_PIXELS), dtype=np.uint8)
    for pixel in range(IMAGE_PIXELS):
        images[:, pixel] = table.column(pixel + 1).to_numpy()
    offsets = np.arange(table.num_rows, dtype=np.int64)
    return make_batch(
        images,
        letters + NUM_DIGITS,
        plan.path,
        rows=chunk.first_line + offsets,
        splits=letters_split(chunk.first_data_row + offsets, split_seed, test_fraction),
    )


def _is_header(first_line: bytes, path: str) -> bool:
    fields = first_line.rstrip(b"\r").split(b",")
    if all(_INTEGER.fullmatch(field) for field in fields):  # a first line of integers is data
        return False
    if len(fields) != NUM_FIELDS:
        raise DataError(
            f"{path}, line 1: a header line with {len(fields)} fields; expected no header, or a header of "
            f"{NUM_FIELDS} column names, then lines of {EXPECTED}"
        )
    return True


def _raise_first_bad_line(path: str, chunk: CsvChunk, data: bytes, fallback: str):
    """pyarrow says something is wrong but not on which line: find it and say what it is."""
    for offset, line in enumerate(data.split(b"\n")):
        line = line.rstrip(b"\r")
        if not line and offset == data.count(b"\n"):
            break  # the empty remainder after the final newline
        where = f"{path}, line {chunk.first_line + offset}"
        fields = line.split(b",")
        if not line.strip():
            raise DataError(f"{where}: empty line (expected {EXPECTED})")
        if len(fields) != NUM_FIELDS:
            raise DataError(f"{where}: {len(fields)} fields (expected {EXPECTED})")
        for column, field in enumerate(fields):
            what = "label" if column == 0 else f"pixel {column - 1}"
            if not _INTEGER.fullmatch(field):
                raise DataError(f"{where}: {what} is {field.decode(errors='replace')!r}, not an integer (expected {EXPECTED})")
            value = int(field.strip().strip(b'"'))
            if column == 0 and not 0 <= value < NUM_LETTERS:
                raise DataError(f"{where}: label {value} is outside 0-{NUM_LETTERS - 1} (expected {EXPECTED})")
            if not 0 <= value <= 255:
                raise DataError(f"{where}: {what} is {value}, outside 0-255 (expected {EXPECTED})")
    raise DataError(f"{path}, lines {chunk.first_line}+: could not parse ({fallback}); expected {EXPECTED}")


def _empty_batch(path: str) -> Batch:
    empty = np.empty(0, dtype=np.int64)
    return make_batch(np.empty((0, IMAGE_PIXELS), np.uint8), empty, path, empty, np.empty(0, dtype=object))
