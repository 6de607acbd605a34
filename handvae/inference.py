"""Ray Data batch inference with a model: the actor pool that evaluation and generation share.

The driver loads and checks the model file once (a bad file fails before any actor starts); each
actor then loads the same file itself. Only the file's path travels to the actors, not the weights:
an argument over 100 KB goes through the object store, where a restarted actor cannot count on
finding it (ray-project/ray#53727), while the file stays put and a restarted actor reloads it. On a
cluster the actors run on other nodes, so the model file must be a URI (s3://..., where a cluster's
training run writes it): a local path is refused there (`runtime.check_paths_reach_workers`).
Ray Data 2.60 itself still makes the core worker log "Actor ... has constructor arguments in the
object store" for its own context and transformer refs, whatever the arguments are;
map_batches(max_restarts=0) would silence it at the cost of actor restarts, which we keep, and the
callers run their pools inside `handvae.runtime.hiding_actor_restart_notice`, which keeps that line
off the terminal.
"""

import os

import ray
import ray.data
import torch

from handvae import storage
from handvae.data.records import IMAGE_SIDE
from handvae.errors import ModelFileError
from handvae.formats.model_file import load_model_and_metadata
from handvae.labels import NUM_CLASSES
from handvae.model.vae import VAE
from handvae.runtime import check_paths_reach_workers, check_workers_fit, init_ray


def load_checked_model(path: str) -> tuple[VAE, dict]:
    """The model in `path`, refused with a clear error if it does not fit the data's sizes."""
    model, metadata = load_model_and_metadata(path)
    if (model.config.input_size, model.config.num_classes) != (IMAGE_SIDE, NUM_CLASSES):
        raise ModelFileError(
            f"{path}: the model is built for {model.config.input_size}x{model.config.input_size} images and "
            f"{model.config.num_classes} classes; the data has {IMAGE_SIDE}x{IMAGE_SIDE} images and {NUM_CLASSES} classes"
        )
    return model, metadata


class ModelActor:
    """Base of the map_batches classes: builds the model once per actor, on its GPU if it has one."""

    def __init__(self, model_path: str, use_gpu: bool):
        context = ray.get_runtime_context()  # outside an actor (called in-process by a benchmark): one thread
        cpus = context.get_assigned_resources().get("CPU", 1) if context.get_actor_id() else 1
        torch.set_num_threads(max(1, int(cpus)))
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model, _ = load_checked_model(model_path)
        self.model.to(self.device).eval()


@ray.remote(num_cpus=0)
class RowCounter:
    """The rows the model actors have made so far, for the driver's progress line (the files are
    written whole at the end of their write task: counting files shows 0% until the last one).
    A restarted actor counts its batches again: the driver caps the count at the total."""

    def __init__(self):
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows

    def total(self) -> int:
        return self.rows


def start_ray_for_actors(num_workers: int | None, use_gpu: bool, reached: dict[str, str | None]) -> int:
    """Start (or join) Ray with room for the actor pool; returns the pool size. By default one actor
    per GPU with use_gpu, else one per CPU but one, left to reading the data and to the driver.
    `reached`: the paths (by flag) that the actors and Ray Data's tasks read or write, which must
    be URIs on a cluster whose workers run on other nodes (runtime.check_paths_reach_workers)."""
    workers = num_workers or (1 if use_gpu else max(1, (os.cpu_count() or 2) - 1))
    check_workers_fit(workers, use_gpu)
    init_ray(extra_cpus=workers)
    check_paths_reach_workers(reached, workers, use_gpu)
    return workers


def map_with_model(
    dataset: ray.data.Dataset,
    actor: type[ModelActor],
    model_path: str,
    extra_args: tuple,
    workers: int,
    use_gpu: bool,
    batch_size: int,
) -> ray.data.Dataset:
    """`dataset` mapped by `actor(model_path, use_gpu, *extra_args)` on a pool of `workers` actors,
    each loading the model file itself (a local path is made absolute: actors need not share the
    driver's working directory)."""
    # One model call per block: each result moves on to the next stage (and the caller) as soon as
    # it is ready, not once the actor has worked through a whole file's block.
    dataset = dataset.repartition(target_num_rows_per_block=batch_size)
    return dataset.map_batches(
        actor,
        fn_constructor_args=(storage.absolute(str(model_path)), use_gpu, *extra_args),
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=batch_size,
        batch_format="numpy",
        num_gpus=1 if use_gpu else 0,
    )
