"""Small files in a run folder that is a local path or any URI pyarrow writes (s3://, gs://, ...)."""

import contextlib
import os
import posixpath
import shutil
import uuid

import pyarrow.fs as pafs


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if "://" in base else os.path.join(base, *parts)


def absolute(path_or_uri: str) -> str:
    return path_or_uri if "://" in path_or_uri else os.path.abspath(path_or_uri)


def write_bytes(path_or_uri: str, data: bytes) -> None:
    """Replace the file whole: locally through a temporary file and a rename."""
    if "://" in path_or_uri:
        fs, path = pafs.FileSystem.from_uri(path_or_uri)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(data)
        return
    os.makedirs(os.path.dirname(path_or_uri) or ".", exist_ok=True)
    tmp = f"{path_or_uri}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path_or_uri)


def read_bytes(path_or_uri: str) -> bytes | None:
    """The file's content, or None where it does not exist."""
    if "://" in path_or_uri:
        fs, path = pafs.FileSystem.from_uri(path_or_uri)
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as stream:
            return stream.read()
    if not os.path.isfile(path_or_uri):
        return None
    with open(path_or_uri, "rb") as f:
        return f.read()


@contextlib.contextmanager
def staged_folder(out_dir: str, marker: str | None = None):
    """A local output folder that appears whole or not at all: yields a temporary folder beside
    `out_dir` to fill; when the block ends without an error, writes `marker` (if any) last and
    renames the folder to `out_dir`, replacing an earlier one. On an error it is removed."""
    staging = f"{out_dir}.tmp-{uuid.uuid4().hex[:8]}"
    os.makedirs(staging)
    try:
        yield staging
        if marker:
            open(os.path.join(staging, marker), "w").close()
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
