"""The locks of outputs: one run at a time writes an output, and a killed run never blocks the next.

Locks: locally a file held with flock(2), which the kernel releases when its process ends, so a
killed run never blocks the next one. On an object store, which has no compare-and-swap through
pyarrow, a lease object: written, read back a second later, renewed every 30 s, taken over when
its holder is dead (same host) or silent for 5 minutes, and read again just before the commit, so
a run that lost it never commits.
"""

import contextlib
import json
import os
import socket
import threading
import time

import filelock

from handvae import storage
from handvae.errors import OutputError

LEASE_SETTLE_S = 1.0  # between writing the lease and reading it back: a rival's write lands first
LEASE_RENEW_S = 30.0
LEASE_EXPIRES_S = 300.0


class _FileLock:
    """A local lock file held with flock(2) through the `filelock` library: the kernel releases it
    when the process ends. The file holds its holder (`holder_record`), for the message of a refused run."""

    def __init__(self, path: str, out: str, run: str):
        self.path, self.out, self.run = path, out, run
        self._lock = filelock.FileLock(path, blocking=False, is_singleton=False, thread_local=False)

    def acquire(self) -> None:
        try:
            self._lock.acquire()
        except filelock.Timeout:
            try:
                with open(self.path, "rb") as f:
                    holder = f.read(4096)
            except FileNotFoundError:
                holder = b""
            raise _busy(self.out, holder) from None
        with open(self.path, "r+b") as f:
            f.truncate(0)
            f.write(holder_record(self.run))

    def verify(self) -> None:
        """The kernel keeps the lock while the process lives."""

    def release(self) -> None:
        if self._lock.is_locked:
            # Removed while still held: a run waiting on this file finds its inode unlinked and
            # takes a new one (filelock checks), so the lock file never outlives the run.
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self._lock.release()


class _LeaseLock:
    """A lease object on a store without compare-and-swap (see the module docstring)."""

    def __init__(self, uri: str, out: str, run: str):
        self.uri, self.out, self.run = uri, out, run
        self._stop, self._lost, self._thread = threading.Event(), False, None

    def _holder(self) -> dict | None:
        raw = storage.read_bytes(self.uri)
        with contextlib.suppress(ValueError, TypeError):
            return json.loads(raw)
        return None

    def acquire(self) -> None:
        holder = self._holder()
        if holder and not _expired(holder):
            raise _busy(self.out, json.dumps(holder).encode())
        storage.write_bytes(self.uri, holder_record(self.run))
        time.sleep(LEASE_SETTLE_S)
        holder = self._holder()
        if not holder or holder.get("run") != self.run:
            raise _busy(self.out, json.dumps(holder).encode())
        self._thread = threading.Thread(target=self._renew, name="handvae-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            holder = self._holder()
            if not holder or holder.get("run") != self.run:
                self._lost = True
                return
            storage.write_bytes(self.uri, holder_record(self.run))

    def verify(self) -> None:
        holder = self._holder()
        if self._lost or not holder or holder.get("run") != self.run:
            raise OutputError(
                f"{self.out}: another run took over this output's lock ({holder}); this run's output was not committed"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = self._holder()
        if holder and holder.get("run") == self.run:
            storage.delete_file(self.uri)


def holder_record(run: str) -> bytes:
    """Who holds a lock (or left a staging folder): run, host, process and when."""
    since = time.time()
    return json.dumps({"run": run, "host": socket.gethostname(), "pid": os.getpid(), "renewed": since}).encode()


def _expired(holder: dict) -> bool:
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True  # its process is gone
        except PermissionError:
            pass  # alive, someone else's
    return time.time() - float(holder.get("renewed", 0)) > LEASE_EXPIRES_S


def _busy(out: str, holder: bytes) -> OutputError:
    try:
        info = json.loads(holder)
        who = f"run {info['run']}, process {info['pid']} on {info['host']}"
    except (ValueError, TypeError, KeyError):
        who = "another process"
    return OutputError(
        f"{out}: another handvae run is writing this output ({who}); wait for it to end, or give another output"
    )


def output_lock(lock_path: str, out: str, run: str) -> "_FileLock | _LeaseLock":
    """The lock of output `out` at `lock_path`: a local file lock, or a lease object on a store."""
    return _LeaseLock(lock_path, out, run) if storage.is_uri(lock_path) else _FileLock(lock_path, out, run)
