"""The Kaggle "A-Z Handwritten Alphabets" CSV: label 0-25 (A-Z) then 784 pixels 0-255 per line.

The real file has no header line; a copy re-saved by pandas starts with "0,0.1,0.2,...", and a
header of column names ("label,pixel0,...") is accepted too. Anything else on line 1 is data and
checked as every other line is (a `12.0` pixel on line 1 is the same error as on line 7). A UTF-8
BOM is skipped. The file is cut at line boundaries into byte ranges (`plan_csv`) that read tasks
parse independently (`read_chunk`), so a 700 MB file is never held whole and many workers share it.

Compressed files (gzip, bz2, zstd, lz4 by their magic bytes; brotli by a .br name) are read as one
range: a compressed stream cannot be entered at a byte offset, so one task decompresses and parses
the whole file (for a large file, `handvae prepare` it once, or decompress it, to read in parallel).
Pure pyarrow/numpy; the Ray wiring is in `handvae.data.sources`.
"""

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from handvae import storage
from handvae.data.records import IMAGE_PIXELS, Batch, letters_split, make_batch, require_file
from handvae.errors import DataError
from handvae.labels import NUM_DIGITS, NUM_LETTERS

NUM_FIELDS = 1 + IMAGE_PIXELS
EXPECTED = f"{NUM_FIELDS} comma-separated integers: a label 0-{NUM_LETTERS - 1} (A-Z) then {IMAGE_PIXELS} pixels 0-255"
_SCAN_BYTES = 8 << 20
_HEAD_BYTES = 64 << 10
_INTEGER = re.compile(rb'\s*"?-?\d+"?\s*')  # what pyarrow accepts as an integer field
_PANDAS_NAME = re.compile(rb"(\d+)(?:\.(\d+))?")  # pandas' names for a re-saved integer row: "0", "0.1", ...
_COLUMN_NAMES = [f"c{i}" for i in range(NUM_FIELDS)]
_BOM = b"\xef\xbb\xbf"
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control bytes no text CSV holds
_ONE_RANGE = 1 << 62
# Compressed formats pyarrow decompresses, by magic bytes; and archives it does not read.
_CODECS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x04\x22\x4d\x18", "lz4"))
_ARCHIVES = ((b"PK\x03\x04", "a zip archive"), (b"\xfd7zXZ\x00", "an xz file"), (b"7z\xbc\xaf\x27\x1c", "a 7z archive"))


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
    compression: str | None = None
    """pyarrow's codec name for a compressed file (one range over the decompressed bytes), else None."""


@dataclass(frozen=True)
class CsvHead:
    """What the file's first bytes tell: enough to refuse a bad file before any work starts."""

    file_size: int
    compression: str | None
    bom: bool
    has_header: bool


def default_chunk_bytes(file_size: int) -> int:
    """About 16 ranges for a small file, 16 MB ranges (~8.5k rows) for a large one: on the full
    Kaggle file, 6% less peak memory than 32 MB ranges at the same speed (benchmarks/ingest.py)."""
    return int(min(16 << 20, max(256 << 10, -(-file_size // 16))))


def inspect_csv(path: str) -> CsvHead:
    """Reads the first 64 KB only: missing, unreadable, archived, empty, header-only and bad-header
    files are refused here, cheaply, before a command starts Ray."""
    fs, fs_path = storage.resolve_input(path)
    size = require_file(fs, fs_path, "letters CSV")
    try:
        with fs.open_input_stream(fs_path, compression=None) as stream:
            compression = _compression(stream.read(8), path)
        with fs.open_input_stream(fs_path, compression=compression) as stream:
            head = stream.read(_HEAD_BYTES)
    except OSError as exc:  # permission denied, a compressed file cut short, ...
        raise DataError(f"{path}: cannot read the letters CSV ({exc})") from None
    whole = len(head) < _HEAD_BYTES  # the head is the whole file
    bom = head.startswith(_BOM)
    head = head[len(_BOM) :] if bom else head
    if not head.strip():
        raise DataError(f"{path}: the letters CSV has no data (expected lines of {EXPECTED})")
    binary = _BINARY.search(head)
    if binary:
        raise DataError(
            f"{path}: not a text file (byte {binary.start() + 1} is {binary.group()!r}); expected the letters CSV: lines of {EXPECTED}"
        )
    if b"\n" not in head and not whole:
        raise DataError(f"{path}, line 1: longer than {_HEAD_BYTES} bytes (expected {EXPECTED})")
    first_line, _, rest = head.partition(b"\n")
    has_header = _is_header(first_line, path)
    if has_header and whole and not rest.strip():  # a header line is < 64 KB: the file is all here
        raise DataError(f"{path}: only a header line, no data rows (expected lines of {EXPECTED} after it)")
    return CsvHead(file_size=size, compression=compression, bom=bom, has_header=has_header)


def plan_csv(path: str, chunk_bytes: int | None = None) -> CsvPlan:
    """One sequential scan: find the header, cut ranges at line ends, count the lines before each."""
    head = inspect_csv(path)
    fs, fs_path = storage.resolve_input(path)
    has_header = head.has_header
    if head.compression:
        chunk_bytes = _ONE_RANGE  # see the module docstring
    chunk_bytes = chunk_bytes or default_chunk_bytes(head.file_size)

    starts = [(len(_BOM) if head.bom else 0, 0)]  # (byte offset of a range, newlines before it)
    newlines, pos, last_byte = 0, 0, b"\n"
    try:
        with fs.open_input_stream(fs_path, compression=head.compression) as stream:
            while buf := stream.read(_SCAN_BYTES):
                counted = 0
                while (search_from := max(starts[-1][0] + chunk_bytes - pos, counted)) < len(buf):
                    end_of_line = buf.find(b"\n", search_from)
                    if end_of_line < 0:
                        break
                    newlines += buf.count(b"\n", counted, end_of_line + 1)
                    counted = end_of_line + 1
                    starts.append((pos + counted, newlines))
                newlines += buf.count(b"\n", counted)
                pos += len(buf)
                last_byte = buf[-1:]
    except OSError as exc:  # a compressed file cut short, a network error
        raise DataError(f"{path}: cannot read the letters CSV ({exc})") from None
    size = pos  # of the decompressed bytes, for a compressed file
    if starts[-1][0] == size and len(starts) > 1:
        starts.pop()  # a cut after the file's final newline starts no range
    num_lines = newlines + (last_byte != b"\n")

    chunks = []
    for index, (start, lines_before) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else size
        skip_header = has_header and index == 0
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
    return CsvPlan(
        path=source,
        has_header=has_header,
        num_data_rows=num_lines - has_header,
        chunks=tuple(chunks),
        compression=head.compression,
    )


def read_chunk(plan: CsvPlan, chunk: CsvChunk, split_seed: int, test_fraction: float) -> Batch:
    """Parse one range into records; any bad line raises a DataError naming its line."""
    data = _read_range(plan, chunk)
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


def _read_range(plan: CsvPlan, chunk: CsvChunk) -> bytes:
    fs, fs_path = storage.resolve_input(plan.path)
    if plan.compression:  # one range: the whole decompressed file
        with fs.open_input_stream(fs_path, compression=plan.compression) as stream:
            return stream.read()[chunk.start : chunk.end]
    with fs.open_input_file(fs_path) as f:
        return f.read_at(chunk.end - chunk.start, chunk.start)


def _compression(magic: bytes, path: str) -> str | None:
    for prefix, codec in _CODECS:
        if magic.startswith(prefix):
            return codec
    for prefix, what in _ARCHIVES:
        if magic.startswith(prefix):
            raise DataError(
                f"{path}: {what}, which handvae does not read; extract the CSV from it (expected a CSV file, "
                "plain or compressed with gzip, bz2, zstd, lz4 or brotli)"
            )
    return "brotli" if path.lower().endswith(".br") else None  # brotli has no magic bytes


def _is_header(first_line: bytes, path: str) -> bool:
    """Only a header is a header: pandas' names for a re-saved integer row ("0,0.1,0.2,...", where
    the n-th repeat of a value v is named "v.n") or a line of column names (no field a number).
    Anything else is data, which `read_chunk` checks as it checks every line."""
    fields = [field.strip().strip(b'"') for field in first_line.rstrip(b"\r").split(b",")]
    if not (_is_pandas_header(fields) or all(_is_name(field) for field in fields)):
        return False
    if len(fields) != NUM_FIELDS:
        raise DataError(
            f"{path}, line 1: a header line with {len(fields)} fields; expected no header, or a header of "
            f"{NUM_FIELDS} column names, then lines of {EXPECTED}"
        )
    return True


def _is_pandas_header(fields: list[bytes]) -> bool:
    repeats: dict[bytes, int] = {}
    for field in fields:
        match = _PANDAS_NAME.fullmatch(field)
        if match is None:
            return False
        value, suffix = match.groups()
        seen = repeats.get(value, 0)
        if (suffix is None) != (seen == 0) or (suffix is not None and int(suffix) != seen):
            return False
        repeats[value] = seen + 1
    return len(repeats) < len(fields)  # a data row of 785 values 0-255 repeats some, unnamed


def _is_name(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return bool(field)
    return False


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
                raise DataError(
                    f"{where}: {what} is {field.decode(errors='replace')!r}, not an integer (expected {EXPECTED})"
                )
            value = int(field.strip().strip(b'"'))
            if column == 0 and not 0 <= value < NUM_LETTERS:
                raise DataError(f"{where}: label {value} is outside 0-{NUM_LETTERS - 1} (expected {EXPECTED})")
            if not 0 <= value <= 255:
                raise DataError(f"{where}: {what} is {value}, outside 0-255 (expected {EXPECTED})")
    raise DataError(f"{path}, lines {chunk.first_line}+: could not parse ({fallback}); expected {EXPECTED}")


def _empty_batch(path: str) -> Batch:
    empty = np.empty(0, dtype=np.int64)
    return make_batch(np.empty((0, IMAGE_PIXELS), np.uint8), empty, path, empty, np.empty(0, dtype=object))
