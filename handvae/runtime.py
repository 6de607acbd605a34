"""Connecting to Ray: the cluster in RAY_ADDRESS when set, otherwise an embedded local Ray."""

import logging
import os

import ray


def init_ray(num_cpus: int | None = None) -> None:
    """Start or join Ray once per process, quietly: the jobs print their own progress lines."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # The dashboard is only needed by `ray job submit`, which brings its own cluster.
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logger = logging.getLogger("ray.data")
    logger.setLevel(logging.WARNING)
    logger.addFilter(_drop_user_error_traces)


def _drop_user_error_traces(record: logging.LogRecord) -> bool:
    """Bad input is reported once, plainly, by the command; Ray's copies of its traceback are noise."""
    from handvae.cli import user_error

    return not (record.exc_info and user_error(record.exc_info[1]) is not None)
