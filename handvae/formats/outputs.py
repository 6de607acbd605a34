"""The one output policy of every command that writes a folder: prepare, generate, evaluate --out.

What handvae may do to an output OUT (a local folder, or a URI pyarrow writes: s3://, gs://, ...):
- write it when it is absent or empty;
- replace or delete only what it can prove it wrote: the files that OUT/manifest.json lists when
  that manifest carries handvae's ownership marker (`"owner": "handvae"`) and the command's format
  (`handvae.prepared`, `handvae.generated`, `handvae.report`), and what its own killed runs left,
  each marked as such (RUN_MARKER). A file named _SUCCESS or metrics.json proves nothing;
- never write to the current directory or a folder that holds it, nor to an input or a folder that
  holds one;
- take OUT's lock before any Ray work starts: that is also the check that OUT can be written (an
  OutputError naming OUT if not), and it keeps a second run to the same OUT from starting (it is
  refused with an OutputError naming OUT and the run that holds it).

Two ways to commit, one per kind of output:
- `folder_output` (prepare, evaluate): the command fills a staging folder, which is then renamed
  into place locally (an earlier output is renamed aside first and removed after: OUT is missing
  only between two renames). On an object store, without rename, OUT/_SUCCESS is removed first,
  the files uploaded, the earlier output's files that are not written again deleted, then
  manifest.json and _SUCCESS written last: such an OUT is complete iff _SUCCESS exists.
- `dataset_output` (generate; `handvae.formats.dataset_output`): the workers write into a prefix of
  this run, OUT/data/<run>/, that
  no reader looks at yet. The commit writes the data set card OUT/README.md (whose data_files name
  the prefix), then OUT/manifest.json (whose `files` list it), each in one atomic write (one PUT, or
  a rename), then _SUCCESS; the earlier run's files (its manifest's) are deleted after. A reader that
  follows either
  file sees the earlier output or the new one, whole, and a killed run's prefix is named by neither.
Locks: `handvae.formats.locks`.
"""

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from handvae import storage
from handvae.errors import OutputError
from handvae.formats.dataset_folder import MANIFEST
from handvae.formats.dataset_folder import SUCCESS_MARKER as SUCCESS
from handvae.formats.locks import holder_record, output_lock

OWNER = "handvae"
LOCK = ".handvae.lock"
RUN_MARKER = "_handvae_run.json"  # in every run prefix and staging folder: proves a leftover is ours


def format_of(kind: str) -> str:
    return f"handvae.{kind}"


def owned_manifest(out: str, kind: str) -> dict | None:
    """OUT's manifest if handvae wrote it for this kind of output, else None."""
    raw = storage.read_bytes(storage.join(out, MANIFEST))
    try:
        manifest = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if (
        isinstance(manifest, dict)
        and manifest.get("owner") == OWNER
        and manifest.get("format") == format_of(kind)
        and isinstance(manifest.get("files"), list)
    ):
        return manifest
    return None


def check_location(out: str, inputs: Iterable[str | None]) -> str:
    """OUT made absolute, refused if it is or holds the current directory or an input."""
    out = storage.absolute(out)
    if storage.is_uri(out):
        for path in filter(None, inputs):
            if storage.is_uri(path) and _within(storage.absolute(path), out, "/"):
                raise OutputError(f"{out}: holds the input {path}; give an output outside the inputs")
        return out
    real = os.path.realpath(out)
    if _within(os.path.realpath(os.getcwd()), real, os.sep):
        raise OutputError(
            f"{out}: is the current directory or holds it; handvae never writes its outputs there (give a new folder)"
        )
    for path in filter(None, inputs):
        if not storage.is_uri(path) and _within(os.path.realpath(path), real, os.sep):
            raise OutputError(f"{out}: holds the input {path}; give an output outside the inputs")
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"{out}: is a file; give a folder")
    return out


def _within(path: str, folder: str, sep: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(sep) + sep)


def not_ours(out: str, kind: str) -> OutputError:
    return OutputError(
        f"{out}: exists and is not a handvae {kind} output (no manifest.json of handvae's own); "
        "handvae replaces only what it wrote: give a new or empty folder"
    )


def new_run_id() -> str:
    """Unique per run, sorting by start time: names a run prefix, a staging folder, a lock holder."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def writable(out: str):
    """OSErrors while preparing OUT (permissions, a missing bucket, no credentials) as one OutputError."""

    @contextlib.contextmanager
    def translate():
        try:
            yield
        except OSError as exc:
            raise OutputError(f"{out}: cannot be written ({exc.strerror or exc})") from None

    return translate()


# ---------------------------------------------------------------------------------------------
# Folder outputs: prepare, evaluate


@dataclass
class Staged:
    path: str
    """A local folder to fill with the output's files."""
    manifest: dict = field(default_factory=dict)
    """What the command records; the policy adds format, owner and files."""


def _replaceable_folder(out: str, kind: str) -> dict | None:
    """The manifest of the earlier output in OUT, None if OUT is absent or empty; an OutputError if
    OUT holds anything handvae cannot prove it wrote. OUT's lock (on an object store) is the lock's business."""
    files, folders = storage.list_tree(out)
    files = [name for name in files if name != LOCK]
    if not files and not folders:
        return None
    manifest = owned_manifest(out, kind)
    if manifest is None:
        raise not_ours(out, kind)
    listed = set(manifest["files"]) | {MANIFEST, SUCCESS}
    parents = {os.path.dirname(name) for name in listed}
    parents |= {p for name in parents for p in _parents(name)}
    foreign = [name for name in files if name not in listed] + [name for name in folders if name not in parents]
    if foreign:
        raise OutputError(
            f"{out}: also holds files that handvae did not write ({', '.join(foreign[:5])}); move them away or give another output"
        )
    return manifest


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@contextlib.contextmanager
def folder_output(out: str, kind: str, inputs: Iterable[str | None]) -> Iterator[Staged]:
    """Claims OUT (checks, lock: call it before starting Ray), yields a staging folder to fill, and
    on success commits it whole in OUT's place. On an error nothing in OUT changes."""
    out = check_location(out, inputs)
    with writable(out):
        _replaceable_folder(out, kind)
    run = new_run_id()
    uri = storage.is_uri(out)
    parent, name = os.path.split(out)
    with writable(out):
        if uri:
            lock = output_lock(storage.join(out, LOCK), out, run)
        else:
            os.makedirs(parent, exist_ok=True)
            lock = output_lock(os.path.join(parent, f".{name}.handvae.lock"), out, run)
        lock.acquire()
    try:
        with writable(out):
            if uri:
                staging = tempfile.mkdtemp(prefix="handvae-")
            else:
                _remove_dead_siblings(parent, name, kind)
                staging = os.path.join(parent, f".{name}.handvae-staging-{run}")
                os.makedirs(staging)
                storage.write_bytes(os.path.join(staging, RUN_MARKER), holder_record(run))
        try:
            staged = Staged(staging)
            yield staged
            lock.verify()
            with writable(out):
                (_commit_uri_folder if uri else _commit_local_folder)(out, kind, staged)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()


def _remove_dead_siblings(parent: str, name: str, kind: str) -> None:
    """Staging folders of killed runs, and earlier outputs a killed run had renamed aside. Only
    called under OUT's lock, so no live run owns them."""
    for entry in os.listdir(parent):
        path = os.path.join(parent, entry)
        if entry.startswith(f".{name}.handvae-staging-") and os.path.isfile(os.path.join(path, RUN_MARKER)):
            shutil.rmtree(path)
        elif entry.startswith(f".{name}.handvae-old-") and owned_manifest(path, kind) is not None:
            _replaceable_folder(path, kind)  # only ever removes a folder holding nothing but its own files
            shutil.rmtree(path)


def _finish_manifest(staged: Staged, kind: str) -> bytes:
    files, _ = storage.list_tree(staged.path)
    written = [name for name in files if name not in (RUN_MARKER, MANIFEST, SUCCESS)]
    return json.dumps(
        {"format": format_of(kind), "owner": OWNER, **staged.manifest, "files": written}, indent=2
    ).encode()


def _commit_local_folder(out: str, kind: str, staged: Staged) -> None:
    storage.write_bytes(os.path.join(staged.path, MANIFEST), _finish_manifest(staged, kind))
    open(os.path.join(staged.path, SUCCESS), "w").close()
    os.remove(os.path.join(staged.path, RUN_MARKER))
    aside = None
    if _replaceable_folder(out, kind) is not None:  # checked again: OUT may have changed since the start
        parent, name = os.path.split(out)
        aside = os.path.join(parent, f".{name}.handvae-old-{new_run_id()}")
        os.rename(out, aside)
    elif os.path.isdir(out):
        os.rmdir(out)  # empty
    os.rename(staged.path, out)
    if aside:
        shutil.rmtree(aside)


def _commit_uri_folder(out: str, kind: str, staged: Staged) -> None:
    earlier = _replaceable_folder(out, kind)
    manifest = _finish_manifest(staged, kind)
    storage.delete_file(storage.join(out, SUCCESS))  # incomplete from here until the end
    written = json.loads(manifest)["files"]
    for name in written:
        with open(os.path.join(staged.path, name), "rb") as f:
            storage.write_bytes(storage.join(out, name), f.read())
    for name in set(earlier["files"] if earlier else ()) - set(written):
        storage.delete_file(storage.join(out, name))
    storage.write_bytes(storage.join(out, MANIFEST), manifest)
    storage.write_bytes(storage.join(out, SUCCESS), b"")
