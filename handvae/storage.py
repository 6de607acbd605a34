"""Files in a folder that is a local path or any URI pyarrow writes (s3://, gs://, ...): one set of
calls for both, so that the callers never branch on where their output lives."""

import contextlib
import os
import posixpath
import uuid

import pyarrow.fs as pafs

from handvae.errors import DataError


def is_uri(path_or_uri: str) -> bool:
    return "://" in path_or_uri


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_uri(base) else os.path.join(base, *parts)


def absolute(path_or_uri: str) -> str:
    """A local path made absolute, or the URI without a trailing slash."""
    return path_or_uri.rstrip("/") if is_uri(path_or_uri) else os.path.abspath(path_or_uri)


def resolve(path_or_uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and its path for a local path or a URI."""
    if is_uri(path_or_uri):
        return pafs.FileSystem.from_uri(path_or_uri)
    return pafs.LocalFileSystem(), os.path.abspath(path_or_uri)


def require(path_or_uri: str, what: str, error: type[Exception], folder: bool = False) -> None:
    """`error` unless the path is an existing file (a folder with `folder`): what a command checks
    first, cheaply, before it imports torch or starts Ray. Names the path and what was expected."""
    try:
        fs, path = resolve(path_or_uri)
        found = fs.get_file_info(path).type
    except (OSError, ValueError) as exc:  # an unknown scheme, credentials refused, a network error
        raise error(f"{path_or_uri}: cannot read the {what} ({exc})") from None
    wanted, other = (
        (pafs.FileType.Directory, pafs.FileType.File) if folder else (pafs.FileType.File, pafs.FileType.Directory)
    )
    if found == other:
        raise error(f"{path_or_uri}: a {'file' if folder else 'folder'}, expected the {what}")
    if found != wanted:
        raise error(f"{path_or_uri}: {what} not found")


def write_bytes(path_or_uri: str, data) -> None:
    """Replace the file whole, in one step a reader cannot see half of: on an object store one PUT
    (an object appears when its upload completes), locally a temporary file and a rename."""
    if is_uri(path_or_uri):
        fs, path = resolve(path_or_uri)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(data)
        return
    os.makedirs(os.path.dirname(path_or_uri) or ".", exist_ok=True)
    tmp = f"{path_or_uri}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path_or_uri)
    except OSError as exc:
        if exc.filename is None:  # a failed write (a full disk) names no file: name the one being written
            raise OSError(exc.errno, exc.strerror, path_or_uri) from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_bytes(path_or_uri: str) -> bytes | None:
    """The file's content, or None where it does not exist."""
    fs, path = resolve(path_or_uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return stream.read()


def exists(path_or_uri: str) -> bool:
    fs, path = resolve(path_or_uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(path_or_uri: str) -> bool:
    fs, path = resolve(path_or_uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def list_tree(path_or_uri: str) -> tuple[list[str], list[str]]:
    """(files, folders) under a folder, as sorted '/'-separated paths relative to it; both empty
    where it does not exist."""
    fs, root = resolve(path_or_uri)
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    files, folders = [], []
    for info in fs.get_file_info(selector):
        relative = info.path[len(root) :].lstrip("/")
        (files if info.type == pafs.FileType.File else folders).append(relative)
    return sorted(files), sorted(folders)


def check_writable(folder: str) -> None:
    """Raises the OSError of a folder that cannot be written (permissions, a read-only disk, a store
    refusing the credentials), and leaves nothing behind: a probe file is written and deleted, and
    on a local disk the folders made for it are removed again."""
    made = []
    if not is_uri(folder):
        missing = os.path.abspath(folder)
        while not os.path.exists(missing):
            made.append(missing)
            missing = os.path.dirname(missing)
    probe = join(folder, f".handvae-probe-{uuid.uuid4().hex[:8]}")
    try:
        write_bytes(probe, b"")
        delete_file(probe)
    finally:
        for path in made:  # deepest first; only the folders made here, and only while empty
            with contextlib.suppress(OSError):
                os.rmdir(path)


def delete_file(path_or_uri: str) -> None:
    fs, path = resolve(path_or_uri)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def delete_tree(path_or_uri: str) -> None:
    """Delete a folder and all under it (on an object store: every object under the prefix)."""
    fs, path = resolve(path_or_uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)


def open_input_file(path_or_uri: str):
    """A random-access file (what pyarrow.parquet.ParquetFile takes)."""
    fs, path = resolve(path_or_uri)
    return fs.open_input_file(path)


def resolve_input(path_or_uri: str) -> tuple[pafs.FileSystem, str]:
    """`resolve` for inputs: a URI pyarrow cannot open is the user's DataError, naming it."""
    try:
        return resolve(path_or_uri)
    except Exception as exc:
        raise DataError(f"{path_or_uri}: cannot open this URI ({exc})") from exc
