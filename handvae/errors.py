"""The errors a user can cause, in one module that the library and the CLI both import.

Each message names the file, row, field or flag at fault and what was expected. The CLI turns any
of them into one `error: ...` line and exit status 2 (`handvae.cli.reports_user_errors`); anything
else is a bug and keeps its traceback.
"""

import errno
from collections.abc import Callable
from typing import Any


class UserError(ValueError):
    """Base of the errors a user can cause and fix."""

    def __init__(self, message: str):
        super().__init__(message)
        # Kept apart from args, which Ray extends with retry advice when the error crosses a task.
        self.message = message


class DataError(UserError):
    """Bad or missing input data. The message names the file, the line or record, and what was expected."""


class ConfigError(UserError):
    """An option or setting that cannot work (a flag, a config file's field, a recipe's value): the
    one error type of every option's validation (`require`), raised before any worker starts."""


class ModelFileError(UserError):
    """A model file that is missing, unreadable, or not a handvae model of usable sizes."""


class OutputError(UserError):
    """An output folder or URI that cannot be written, or that handvae may not replace."""


def require(
    owner: str, name: str, value: Any, kinds: type | tuple[type, ...], ok: Callable[[Any], bool], expected: str
) -> None:
    """One option's check, shared by every config and options class: `value` is of `kinds` (a bool
    is never a number here) and `ok(value)`, else a ConfigError "{owner}{name} must be {expected}, got
    {value!r}" (`owner` "Augment." or "" for a flag)."""
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ConfigError(f"{owner}{name} must be {expected}, got {value!r}")
    if not isinstance(value, kinds) or not ok(value):
        raise ConfigError(f"{owner}{name} must be {expected}, got {value!r}")


SEED_MAX = 2**32 - 1
"""The largest seed: seeds are hashed as 32-bit values (`handvae.data.records.mix64`), so a larger
one would silently give a smaller one's output."""
COUNT_MAX = 10**9
"""The largest count a flag takes (styles, rows, epochs, ...): beyond it nothing would finish, and
numpy and torch overflow further on (10**30 styles was an OverflowError deep in the sampling)."""


def check_int(name: str, value: Any, low: int, high: int, owner: str = "") -> None:
    """`require` of an integer in [low, high]: refused where it is given, not where a library
    underneath overflows on it."""
    require(owner, name, value, int, lambda v: low <= v <= high, f"an integer in [{low:,}, {high:,}]")


def check_paths(*flags: tuple[str, str | None]) -> None:
    """A ConfigError for an empty path (an unset shell variable), given as (flag, value): never a
    fallback to a default."""
    for flag, value in flags:
        if value is not None and not value.strip():
            raise ConfigError(f"{flag} is an empty path; give a file, folder or URI (is a shell variable unset?)")


# What a machine or a store says about a place a command writes or reads, which the user can fix
# (free space, permissions), where a check before the work could not tell: the disk filled up.
_RESOURCE_ERRNOS = {
    errno.ENOSPC: "free some space there, or give another location",
    errno.EDQUOT: "free some space there, or give another location",
    errno.EROFS: "give a location you can write to",
    errno.EACCES: "check its permissions, or give another location",
    errno.EPERM: "check its permissions, or give another location",
}
_STORE_REFUSALS = (
    "ACCESS_DENIED",
    "AccessDenied",
    "InvalidAccessKeyId",
    "INVALID_ACCESS_KEY_ID",  # pyarrow's name of S3's InvalidAccessKeyId
    "SignatureDoesNotMatch",
    "SIGNATURE_DOES_NOT_MATCH",
    "NO_SUCH_BUCKET",
    "NoSuchBucket",
)


def user_error(exc: BaseException | None) -> UserError | None:
    """The UserError behind an exception, also when Ray wrapped it in a task error (whose `cause`
    holds the worker's exception) or it was raised while handling another; or a resource failing
    at run time (a full disk, a read-only folder, an object store refusing the credentials) as an
    OutputError naming the path and what to do."""
    seen, resource = set(), None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(exc, UserError) and not isinstance(cause, BaseException):
            return exc
        if isinstance(exc, OSError):  # the deepest one names the file
            resource = resource_error(exc) or resource
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
    return resource


def resource_error(exc: OSError) -> OutputError | None:
    """The OutputError for a resource failing (see `user_error`), or None for another OSError."""
    if exc.errno in _RESOURCE_ERRNOS:
        where = exc.filename or "a file it writes"
        return OutputError(f"{where}: {exc.strerror}; {_RESOURCE_ERRNOS[exc.errno]}")
    text = str(exc)
    if any(refusal in text for refusal in _STORE_REFUSALS):
        return OutputError(
            f"the object store refused a request ({text.strip()}); check the bucket's name and the credentials (AWS_* variables, ...)"
        )
    return None
