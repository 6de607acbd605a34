"""The errors a user can cause, in one module that the library and the CLI both import.

Each message names the file, row, field or flag at fault and what was expected. The CLI turns any
of them into one `error: ...` line and exit status 2 (`handvae.cli.reports_user_errors`); anything
else is a bug and keeps its traceback.
"""

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


def user_error(exc: BaseException | None) -> UserError | None:
    """The UserError behind an exception, also when Ray wrapped it in a task error (whose `cause`
    holds the worker's exception) or it was raised while handling another."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(exc, UserError) and not isinstance(cause, BaseException):
            return exc
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
    return None
