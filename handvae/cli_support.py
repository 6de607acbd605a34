"""The command line's shared parts: the data flags (declared once, added to each command that reads
data), the options that several commands share, and user errors reported as one line."""

import functools
import inspect
from typing import Annotated

import typer

from handvae import storage
from handvae.errors import DataError, check_paths, user_error

# The data flags, declared once: `with_data_flags` adds them to a command, which gets `sources`.
_DATA_FLAGS = {
    "letters_csv": (
        str | None,
        None,
        typer.Option("--letters-csv", help="Kaggle A-Z CSV: a path or URI (s3://, gs://, ...)."),
    ),
    "mnist_dir": (
        str | None,
        None,
        typer.Option("--mnist-dir", help="MNIST root in torchvision's layout (ROOT/MNIST/raw/*-ubyte[.gz])."),
    ),
    "download": (
        bool,
        False,
        typer.Option("--download", help="Fetch MNIST into --mnist-dir with torchvision (needs a network)."),
    ),
    "prepared": (
        str | None,
        None,
        typer.Option("--prepared", help="A folder written by `handvae prepare` (instead of raw sources)."),
    ),
    "split_seed": (int, 0, typer.Option("--split-seed", help="Seed of the letters' 80/20 train/test split.")),
}
_DATASET_FLAG = (
    str | None,
    None,
    typer.Option("--dataset", help="A folder written by `handvae prepare` or `handvae generate`: a path or URI."),
)


# Ctrl-C: Python's KeyboardInterrupt, or SystemExit where Ray handles the signal (Train's fit() has
# its own SIGINT handler that aborts the run and exits; a ray.get interrupted in Ray's core worker
# raises SystemExit(1)). Nothing else in a command exits the process.
INTERRUPTED = (KeyboardInterrupt, SystemExit)


def reports_user_errors(command):
    """Bad input ends the command with its message on stderr and exit status 2, no traceback;
    Ctrl-C with one `interrupted` line (saying how to go on, where there is a way) and status 130,
    as a shell reports a command that SIGINT ended."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except INTERRUPTED as exc:
            hint = str(exc) if isinstance(exc, KeyboardInterrupt) else ""
            typer.echo(f"interrupted{f': {hint}' if hint else ''}", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            found = user_error(exc)
            if found is None:
                raise
            typer.echo(f"error: {getattr(found, 'message', found)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def with_data_flags(dataset: bool = False):
    """Adds the data flags (and --dataset) to a command's options; the command receives the
    `sources` they name. A named CSV is checked before Ray starts (missing, unreadable, archived,
    header only)."""
    flags = {**_DATA_FLAGS, **({"dataset": _DATASET_FLAG} if dataset else {})}

    def decorate(command):
        signature = inspect.signature(command)
        own = [param for name, param in signature.parameters.items() if name != "sources"]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])
            for name, (kind, default, option) in flags.items()
        ]

        @functools.wraps(command)
        def wrapper(**kwargs):
            given = {name: kwargs.pop(name) for name in flags}
            check_data_flags(given)
            from handvae.data.sources import DataSources

            sources = DataSources(
                letters_csv=given["letters_csv"],
                mnist_dir=given["mnist_dir"],
                download=given["download"],
                prepared_dir=given["prepared"],
                split_seed=given["split_seed"],
                dataset=given.get("dataset"),
            )
            return command(sources=sources, **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
        wrapper.__signature__ = signature.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def check_data_flags(given: dict) -> None:
    """What the data flags name, checked before torch and Ray are imported (seconds): an empty path,
    a missing, unreadable, binary or header-only CSV, a file where a folder is expected, a missing
    data set folder. Never a fallback to the bundled sample for an empty path."""
    check_paths(
        *(
            (f"--{name.replace('_', '-')}", given.get(name))
            for name in ("letters_csv", "mnist_dir", "prepared", "dataset")
        )
    )
    if given["letters_csv"] is not None:
        from handvae.data.kaggle_csv import inspect_csv

        inspect_csv(given["letters_csv"])
    for flag in ("--dataset", "--prepared"):
        folder = given.get(flag.strip("-"))
        if folder is not None:
            storage.require(
                folder,
                f"data set folder ({flag}: written by `handvae prepare` or `handvae generate`)",
                DataError,
                folder=True,
            )
    # A missing MNIST folder is the reader's to name: it says which files it expected where.
    if given["mnist_dir"] is not None and storage.is_file(given["mnist_dir"]):
        raise DataError(
            f"{given['mnist_dir']}: a file, expected the MNIST folder (--mnist-dir: ROOT/MNIST/raw/*-ubyte[.gz])"
        )


ModelFile = Annotated[str, typer.Option("--model", help="A model file written by `handvae train`: a path or URI.")]
ActorCount = Annotated[int | None, typer.Option("--num-workers", help="Model actors (default: one per CPU but one).")]
ActorGpu = Annotated[bool, typer.Option("--use-gpu", help="One GPU per model actor.")]
