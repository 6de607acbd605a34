"""The output policy for generated data sets (`handvae generate --out`): the workers write into a
prefix of this run, OUT/data/<run>/, that no reader looks at yet, and the commit makes it the data
set (see `handvae.formats.outputs` for the policy as a whole: what handvae may replace or delete).
"""

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from handvae import storage
from handvae.formats.dataset_folder import DATA_DIR, MANIFEST
from handvae.formats.dataset_folder import SUCCESS_MARKER as SUCCESS
from handvae.formats.locks import holder_record, output_lock
from handvae.formats.outputs import (
    LOCK,
    OWNER,
    RUN_MARKER,
    check_location,
    format_of,
    new_run_id,
    not_ours,
    owned_manifest,
    writable,
)


@dataclass
class DatasetRun:
    """One run writing a data set into OUT: the workers write under `prefix`, then `commit`."""

    out: str
    run: str
    lock: object
    committed: bool = False

    @property
    def data_dir(self) -> str:
        """The run's prefix, relative to OUT."""
        return f"{DATA_DIR}/{self.run}"

    @property
    def prefix(self) -> str:
        return storage.join(self.out, DATA_DIR, self.run)

    def commit(self, files: list[str], manifest: dict, before_manifest: dict[str, bytes]) -> dict:
        """Make the run's `files` (relative to its prefix) OUT's content: `before_manifest` (name ->
        bytes: the card, the contact sheet) first, then manifest.json, then _SUCCESS; then remove
        the earlier run's files. Returns the manifest written."""
        self.lock.verify()
        earlier = owned_manifest(self.out, "generated")
        for name, data in before_manifest.items():
            storage.write_bytes(storage.join(self.out, name), data)
        manifest = {
            "format": format_of("generated"),
            "owner": OWNER,
            "run": self.run,
            "data_dir": self.data_dir,
            "files": [f"{self.data_dir}/{name}" for name in files],
            **manifest,
        }
        storage.write_bytes(storage.join(self.out, MANIFEST), json.dumps(manifest, indent=2).encode())
        if not storage.is_file(storage.join(self.out, SUCCESS)):
            storage.write_bytes(storage.join(self.out, SUCCESS), b"")
        self.committed = True
        for name in set(earlier["files"] if earlier else ()) - set(manifest["files"]):
            storage.delete_file(storage.join(self.out, name))
        for run in _marked_runs(self.out) - {self.run}:  # the earlier run's prefix, and killed runs'
            _delete_run(self.out, run, killed=not earlier or run != earlier.get("run"))
        return manifest


_RUN_FILE = re.compile(r"train-\d{5}\.parquet")  # RUN_FILE's names


def _delete_run(out: str, run: str, killed: bool) -> None:
    """What handvae wrote in a run's prefix: its marker, and, for a killed run (which no manifest
    lists), the files a run writes (RUN_FILE); the files of a committed run the caller has deleted
    by its manifest. Anything else (a user's file) stays, and with it the folder."""
    prefix = storage.join(out, DATA_DIR, run)
    files, _ = storage.list_tree(prefix)
    ours = [name for name in files if name == RUN_MARKER or (killed and _RUN_FILE.fullmatch(name))]
    for name in ours:
        storage.delete_file(storage.join(prefix, name))
    if len(ours) == len(files):
        storage.delete_tree(prefix)  # empty folders (locally; an object store has none)


def _marked_runs(out: str) -> set[str]:
    files, _ = storage.list_tree(storage.join(out, DATA_DIR))
    return {name.split("/")[0] for name in files if name.count("/") == 1 and name.endswith("/" + RUN_MARKER)}


def _check_dataset(out: str) -> None:
    """OUT may be absent or empty, an earlier data set of handvae's (files beside it are left
    alone), or hold only what killed runs of handvae left."""
    files, _ = storage.list_tree(out)
    if not files or owned_manifest(out, "generated") is not None:
        return
    runs = _marked_runs(out)
    if all(name == LOCK or (name.startswith(f"{DATA_DIR}/") and name.split("/")[1] in runs) for name in files):
        return
    raise not_ours(out, "generated")


@contextlib.contextmanager
def dataset_output(out: str, inputs: Iterable[str | None]) -> Iterator[DatasetRun]:
    """Claims OUT for a generated data set (checks, lock: call it before starting Ray) and yields
    the run. A run that ends without its commit deletes its own prefix and leaves OUT as it was."""
    out = check_location(out, inputs)
    with writable(out):
        _check_dataset(out)
    run = new_run_id()
    lock = output_lock(storage.join(out, LOCK), out, run)
    created = not storage.is_uri(out) and not os.path.exists(out)
    with writable(out):
        if not storage.is_uri(out):
            os.makedirs(out, exist_ok=True)
        lock.acquire()
    dataset = DatasetRun(out, run, lock)
    try:
        with writable(out):
            storage.write_bytes(storage.join(dataset.prefix, RUN_MARKER), holder_record(run))
        yield dataset
    finally:
        try:
            if not dataset.committed:
                _delete_run(out, run, killed=True)
        finally:
            lock.release()
            if created and not dataset.committed:
                for folder in (os.path.join(out, DATA_DIR), out):  # as it was: absent
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)
