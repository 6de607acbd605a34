"""The training job's driver: plans the feed, starts Ray Train's TorchTrainer (DDP), exports model.pt.

    handvae train                                    # bundled sample, embedded local Ray
    handvae train --letters-csv "A_Z Handwritten Data.csv" --mnist-dir data/mnist --num-workers 2
    handvae train --dataset generated/NAME           # a folder written by `handvae generate` or `handvae prepare`
    RAY_ADDRESS=... handvae train ... --use-gpu --storage-path s3://bucket/runs --run-name exp1

The workers' side (the loop, the two feeds) is `handvae.train.worker`; the run folder's files are
`handvae.formats.checkpoints`'. The evaluation report at the end is chained by the command
(`handvae.cli`), not here: training does not import evaluation.
"""

import json
from dataclasses import dataclass

from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from handvae import storage
from handvae.data import folders
from handvae.data.records import IMAGE_PIXELS
from handvae.data.sources import DataSources, plan_sources_folder, read_split, training_columns
from handvae.errors import ConfigError, DataError, OutputError
from handvae.formats.checkpoints import CONFIG_FILE, MODEL_FILE, NON_FINITE_FILE, RunCheckpoints
from handvae.formats.model_file import save_model
from handvae.model.vae import VAE
from handvae.runtime import (
    check_paths_reach_workers,
    check_workers_fit,
    init_ray,
    keeping_sigint_handler,
    set_aside_stale_train_snapshot,
)
from handvae.train.config import TrainConfig
from handvae.train.worker import FaultInjection, train_loop_per_worker

# Fields that may change when a run is resumed; any other change would silently mix two recipes.
RESUMABLE_CHANGES = {"epochs", "checkpoint_every", "max_failures", "tensorboard", "report"}
IN_MEMORY_LIMIT_BYTES = 512 << 20
"""data_feed "auto" streams a data set folder whose train and test images are larger: each worker
would otherwise hold a copy of them, and the driver's object store another."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: str
    model_path: str
    metrics: list[dict]


def run_training(config: TrainConfig, sources: DataSources, run_name: str, storage_path: str) -> TrainResult:
    """Train (or resume the run of the same name) and write the final model file."""
    storage_path = storage.absolute(storage_path)
    run_dir = storage.join(storage_path, run_name)
    checkpoints = RunCheckpoints(run_dir)
    _check_resumable(checkpoints, config)
    set_aside_stale_train_snapshot(run_dir, checkpoints.folders(), checkpoints.warn)
    _check_local_outputs(config, run_dir)
    check_workers_fit(config.num_workers, config.use_gpu)
    folder = plan_sources_folder(sources)  # a data set folder: its footers only; None for raw sources
    if folder is not None:
        for split in ("train", "test"):
            if folder.rows(split) == 0:
                raise DataError(f"{folder.root}: no {split} images (training needs both splits)")
    stream = _streams(config, folder)
    fault = FaultInjection.from_env()
    reached = {
        "--storage-path": storage_path,
        "--letters-csv": sources.letters_csv,
        "--prepared": sources.prepared_dir,
        "--dataset": sources.dataset,
    }
    check_paths_reach_workers(reached, config.num_workers, config.use_gpu)
    # Before Ray starts: a run folder that cannot be written fails now, in one line (and a bad data
    # set below still leaves no run folder behind).
    try:
        storage.check_writable(run_dir)
    except OSError as exc:
        raise OutputError(
            f"{run_dir}: cannot be written ({exc.strerror or exc}); give a --storage-path you can write to"
        ) from None
    init_ray(extra_cpus=config.num_workers)

    print(_feed_line(config, folder, stream), flush=True)
    # In memory: read and validated once, here, so bad data fails before any worker starts, and
    # workers fetch blocks from the object store instead of each re-running the readers.
    datasets = (
        {}
        if stream
        else {split: training_columns(read_split(sources, split)).materialize() for split in ("train", "test")}
    )
    storage.write_bytes(
        storage.join(run_dir, CONFIG_FILE),
        json.dumps({"train": config.to_dict(), "data": sources.describe()}, indent=2).encode(),
    )
    storage.delete_file(storage.join(run_dir, NON_FINITE_FILE))  # an earlier attempt's stop: this one trains again
    trainer = TorchTrainer(
        train_loop_per_worker,  # handvae.train.worker
        train_loop_config={
            "config": config.to_dict(),
            "run_dir": run_dir,
            "folder": folder if stream else None,
            "fault": fault,
        },
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
        datasets=datasets,
        # In memory, every worker gets every row and takes its slice (see the module docstring).
        dataset_config=DataConfig(datasets_to_split=[]),
    )
    with keeping_sigint_handler():
        trainer.fit()
    _raise_if_stopped(run_dir, checkpoints)
    _, state = checkpoints.latest(quiet=True)  # the final epoch's; model.pt is exported from it
    model = VAE(config.model)
    model.load_state_dict(state.model_state)  # with the class latent means of the last epoch
    model_path = storage.join(run_dir, MODEL_FILE)
    metadata = {
        "run_name": run_name,
        "epoch": state.epoch,
        "train_config": config.to_dict(),
        "data": sources.describe(),
        "drawing": config.drawing.to_dict(),
    }
    save_model(model_path, model, metadata=metadata)
    return TrainResult(run_dir=run_dir, model_path=model_path, metrics=state.history)


def _raise_if_stopped(run_dir: str, checkpoints: RunCheckpoints) -> None:
    """The workers stopped at a non-finite loss (`handvae.train.worker`): say where, and what is kept."""
    raw = storage.read_bytes(storage.join(run_dir, NON_FINITE_FILE))
    if raw is None:
        return
    stop = json.loads(raw)
    latest = checkpoints.latest(quiet=True)
    kept = (
        f"the last finite checkpoint is {latest[0]} (epoch {latest[1].epoch})"
        if latest
        else "no epoch finished, so no checkpoint was kept"
    )
    where = (
        f"epoch {stop['epoch']}, step {stop['step']}"
        if stop["step"] is not None
        else f"epoch {stop['epoch']} (its figures)"
    )
    terms = ", ".join(f"{name} = {value}" for name, value in stop["terms"].items())
    raise ConfigError(
        f"training stopped at {where}: the loss is not finite ({terms}); {kept}, and no model file was written. "
        "Lower --learning-rate or the loss weights ([loss] in --config) and train under another --run-name"
    )


def _streams(config: TrainConfig, folder: folders.FolderPlan | None) -> bool:
    if config.data_feed == "stream" and folder is None:
        raise ConfigError(
            "data_feed stream reads a data set folder (--dataset); convert raw sources with `handvae prepare` first"
        )
    if config.data_feed != "auto":
        return config.data_feed == "stream"
    whole_set = config.class_balance or config.pairing != "self"  # they draw from the whole training set
    return folder is not None and not whole_set and _image_bytes(folder) > IN_MEMORY_LIMIT_BYTES


def _image_bytes(folder: folders.FolderPlan) -> int:
    return (folder.rows("train") + folder.rows("test")) * IMAGE_PIXELS


def _feed_line(config: TrainConfig, folder: folders.FolderPlan | None, stream: bool) -> str:
    if folder is None:
        return "data: in memory (raw sources are read whole; `handvae prepare` them into a folder to stream)"
    size = f"{folder.rows('train'):,} train and {folder.rows('test'):,} test images ({_image_bytes(folder) / 2**20:,.0f} MiB)"
    rule = (
        f"data_feed {config.data_feed}"
        if config.data_feed != "auto"
        else f"auto: streamed above {IN_MEMORY_LIMIT_BYTES / 2**20:,.0f} MiB"
    )
    if stream:
        return f"data: streaming {size} from {folder.root}; each of {config.num_workers} workers reads its share every epoch ({rule})"
    return f"data: in memory, {size} from {folder.root} in every worker ({rule})"


def _check_resumable(checkpoints: RunCheckpoints, config: TrainConfig) -> None:
    """Before Ray starts: the recipe of the run's newest readable checkpoint (naming damaged ones)
    must be this one, but for RESUMABLE_CHANGES. A run folder without a checkpoint holds no recipe."""
    resume = checkpoints.latest()
    if resume is None:
        return
    folder, state = resume
    if state.epoch > config.epochs:
        raise ConfigError(
            f"{checkpoints.run_dir} has trained {state.epoch} epochs already ({folder}); --epochs {config.epochs} would "
            f"record a recipe that did not make its model: give --epochs {state.epoch} or more to go on, or another --run-name"
        )
    changed = sorted(k for k, v in config.to_dict().items() if state.config.get(k) != v and k not in RESUMABLE_CHANGES)
    if changed:
        raise ConfigError(
            f"{checkpoints.run_dir} holds a run with a different recipe ({', '.join(changed)} differ from {folder}); "
            f"resume it with the same settings, or pick another --run-name"
        )


def _check_local_outputs(config: TrainConfig, run_dir: str) -> None:
    if "://" in run_dir and (config.tensorboard or config.report):
        raise ConfigError(
            "tensorboard scalars and the report are written to a local run folder; use a local --storage-path, or --no-tensorboard --no-report"
        )
    if not config.tensorboard:
        return
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError("tensorboard is not installed: pip install 'handvae[tensorboard]'") from None
