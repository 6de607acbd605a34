"""Ray Data batch inference with a model: the actor pool that evaluation and generation share.

The driver loads and checks the model file once; the weights travel to the actors with their
constructor arguments, so a model file on the driver's disk is enough on a cluster.
"""

import os

import ray
import ray.data
import torch

from handvae.checkpoint import load_model_and_metadata
from handvae.errors import ModelFileError
from handvae.data.records import IMAGE_SIDE
from handvae.labels import NUM_CLASSES
from handvae.model import VAE, VAEConfig
from handvae.runtime import init_ray


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

    def __init__(self, weights: dict, use_gpu: bool):
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model = VAE(VAEConfig(**weights["config"]))
        self.model.load_state_dict(weights["state"])
        self.model.to(self.device).eval()


def start_ray_for_actors(num_workers: int | None, use_gpu: bool) -> int:
    """Start (or join) Ray with room for the actor pool; returns the pool size. By default one actor
    per GPU with use_gpu, else one per CPU but one, left to reading the data and to the driver."""
    workers = num_workers or (1 if use_gpu else max(1, (os.cpu_count() or 2) - 1))
    init_ray(extra_cpus=workers)
    return workers


def map_with_model(
    dataset: ray.data.Dataset, actor: type[ModelActor], model: VAE, extra_args: tuple, workers: int, use_gpu: bool, batch_size: int
) -> ray.data.Dataset:
    """`dataset` mapped by `actor(weights, use_gpu, *extra_args)` on a pool of `workers` actors."""
    weights = {"config": model.config.to_dict(), "state": model.state_dict()}
    # One model call per block: each result moves on to the next stage (and the caller) as soon as
    # it is ready, not once the actor has worked through a whole file's block.
    dataset = dataset.repartition(target_num_rows_per_block=batch_size)
    return dataset.map_batches(
        actor,
        fn_constructor_args=(weights, use_gpu, *extra_args),
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=batch_size,
        batch_format="numpy",
        num_gpus=1 if use_gpu else 0,
    )
