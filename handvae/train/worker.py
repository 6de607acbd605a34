"""The training job's worker side: the loop each Ray Train worker (DDP rank) runs, and its two feeds.

Two ways to feed the workers (`TrainConfig.data_feed`; the driver prints which it takes):
- in memory (raw sources, and data set folders up to IN_MEMORY_LIMIT_BYTES of images): the driver
  reads and validates the data once; each worker loads the train and test sets through
  `get_dataset_shard` into memory (uint8, 55 MB per 70k images), sorted by a stable key, on its
  device (a GPU holds them: no batch is copied from the host). Every epoch all ranks draw the same
  permutation from (seed, epoch) and take disjoint, equal slices.
- streaming (larger data set folders): the driver reads only the files' footers; every epoch each
  worker reads its own share of the rows itself (`handvae.data.folders.read_slices`), shuffled by
  units and in bounded windows (`handvae.data.streaming`), and never holds more than a window.
Either way every rank runs the same number of steps (no all-reduce hang), the rows dropped to keep
ranks equal are fewer than the workers, and the weights depend only on the seed and the worker
count. The sampling noise is seeded from (seed, epoch, rank) (`handvae.rng`), so a run resumed from
a checkpoint continues exactly as if it had never stopped. The class latent means
(`VAE.class_latent_means`) are summed in the last epoch's own forward passes and all-reduced, so the
last checkpoint, and the model file exported from it, carry them.
"""

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from handvae import rng, storage
from handvae.data import folders
from handvae.data.sources import sorted_tensors
from handvae.data.streaming import epoch_slices, in_order_batches, shuffled_batches
from handvae.errors import ConfigError, DataError
from handvae.formats.checkpoints import FAULT_MARKER, METRICS_FILE, NON_FINITE_FILE, RunCheckpoints, TrainingState
from handvae.model.steps import (
    NonFiniteLoss,
    epoch_figures,
    epoch_order,
    epoch_partners,
    evaluate_batches,
    latent_means,
    nearest_in_class,
    train_steps,
)
from handvae.model.vae import VAE
from handvae.train.config import TrainConfig

EVAL_BATCH = 1024
FAULT_INJECTION_ENV = "HANDVAE_FAULT_INJECTION"
FAULT_PAUSE_S = 300.0


@dataclass(frozen=True)
class FaultInjection:
    """A fault for the tests to recover from, never part of a recipe. Given as
    HANDVAE_FAULT_INJECTION=KIND:EPOCH in the driver's environment (under `ray job submit`, the
    job's runtime env), read by the driver and done by rank 0, once per run folder: rank 0 writes
    FAULT_MARKER there when it does it, and a retried or resumed run finds the marker and goes on.
    - `raise:N`: rank 0 raises at the end of epoch N, before its checkpoint: a failed worker.
    - `pause:N`: rank 0 waits (FAULT_PAUSE_S) halfway through epoch N's steps, the marker written:
      the moment for a test to kill a node mid-epoch. Restarted workers do not wait again."""

    kind: str
    """"raise" or "pause"."""
    epoch: int
    """The 1-based epoch it happens in."""

    @classmethod
    def from_env(cls) -> "FaultInjection | None":
        spec = os.environ.get(FAULT_INJECTION_ENV)
        if not spec:
            return None
        kind, _, epoch = spec.partition(":")
        if kind not in ("raise", "pause") or not epoch.isdigit() or int(epoch) < 1:
            raise ConfigError(f"{FAULT_INJECTION_ENV}={spec!r}: expected raise:EPOCH or pause:EPOCH (EPOCH >= 1)")
        return cls(kind, int(epoch))

    def during_epoch(self, batches, epoch: int, steps: int, run_dir: str):
        """The epoch's batches, with the pause halfway through where it is due."""
        for step, batch in enumerate(batches):
            if self.kind == "pause" and epoch == self.epoch and step == steps // 2 and self._first_time(run_dir):
                time.sleep(FAULT_PAUSE_S)
            yield batch

    def after_epoch(self, epoch: int, run_dir: str) -> None:
        if self.kind == "raise" and epoch == self.epoch and self._first_time(run_dir):
            raise RuntimeError(f"{FAULT_INJECTION_ENV}: rank 0 fails once at the end of epoch {epoch}")

    @staticmethod
    def _first_time(run_dir: str) -> bool:
        marker = storage.join(run_dir, FAULT_MARKER)
        if storage.read_bytes(marker) is not None:
            return False
        storage.write_bytes(marker, b"")
        return True


def train_loop_per_worker(loop_config: dict) -> None:
    logging.getLogger().setLevel(logging.WARNING)  # Train's per-report INFO lines; our own line follows
    config = TrainConfig.from_dict(loop_config["config"])
    run_dir = loop_config["run_dir"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()

    rng.seed_global(config.seed)  # identical initial weights on every rank
    model = VAE(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    start_epoch, history = 1, []
    # The newest readable checkpoint in the run folder, not ray.train.get_checkpoint(): that is the
    # latest only, damaged or not (the driver has named any damaged one). After a worker failure
    # in this run, the newest is the one this run wrote last.
    resume = RunCheckpoints(run_dir).latest(quiet=True)
    if resume:
        _, state = resume
        state.restore(model, optimizer)
        start_epoch, history = state.epoch + 1, list(state.history)
    ddp_model = ray.train.torch.prepare_model(model)

    started = time.perf_counter()
    folder = loop_config["folder"]
    feed = StreamingFeed(folder, config, rank, world) if folder else InMemoryFeed(config, rank, world, device)
    steps = -(-feed.per_rank // config.batch_size)
    if rank == 0:
        print(
            f"{'streaming' if folder else 'loaded'} {feed.train_rows} train and {feed.test_rows} test images in "
            f"{time.perf_counter() - started:.1f}s; {world} worker(s), {feed.per_rank} images and "
            f"{steps} steps per worker per epoch"
            + (
                f"; {feed.train_rows - feed.per_rank * world} image(s) left out each epoch to keep the workers equal"
                if feed.train_rows % world
                else ""
            ),
            flush=True,
        )

    scalars = _tensorboard_writer(run_dir) if config.tensorboard and rank == 0 else None
    fault: FaultInjection | None = loop_config["fault"] if rank == 0 else None
    for epoch in range(start_epoch, config.epochs + 1):
        rng.seed_training_step(config.seed, epoch, rank)  # sampling noise, augmentation
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(epoch)
        last = epoch == config.epochs
        latent_sums = (
            torch.zeros(config.model.num_classes, config.model.num_latent + 1, dtype=torch.float64, device=device)
            if last
            else None
        )
        started = time.perf_counter()
        batches = (
            fault.during_epoch(feed.train_batches(epoch), epoch, steps, run_dir) if fault else feed.train_batches(epoch)
        )
        try:
            train_sums = train_steps(ddp_model, optimizer, batches, epoch, config, latent_sums)
        except NonFiniteLoss as stop:
            # Every rank stops at the same step (see NonFiniteLoss) and leaves the loop: the run ends
            # without a retry, its last checkpoint is the last finite one, and the driver says why.
            _record_stop(rank, run_dir, epoch, stop.step, stop.terms)
            return
        train_seconds = time.perf_counter() - started
        eval_sums = evaluate_batches(model, feed.test_batches())
        if last:
            model.class_latent_means.copy_(latent_means(_all_sum(latent_sums)))
        record = {"epoch": epoch, **epoch_figures(_all_sum(train_sums), _all_sum(eval_sums))}
        record["images_per_second"] = record["train_images"] / train_seconds
        non_finite = {name: str(value) for name, value in record.items() if not math.isfinite(value)}
        if non_finite:  # the same all-reduced figures on every rank: all stop here
            _record_stop(rank, run_dir, epoch, None, non_finite)
            return
        history.append(record)
        if rank == 0:
            print(_progress_line(record, config), flush=True)
            storage.write_bytes(
                storage.join(run_dir, METRICS_FILE),
                "".join(json.dumps(r, allow_nan=False) + "\n" for r in history).encode(),
            )
            if scalars:
                for name, value in record.items():
                    scalars.add_scalar(name, value, epoch)
                scalars.flush()
            if fault:
                fault.after_epoch(epoch, run_dir)
        if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
            _report_with_checkpoint(record, rank, model, optimizer, epoch, config, history)
        else:
            ray.train.report(record)


def _record_stop(rank: int, run_dir: str, epoch: int, step: int | None, terms: dict[str, str]) -> None:
    """Rank 0 leaves the driver where and why training stopped at a non-finite loss."""
    if rank == 0:
        stop = {"epoch": epoch, "step": step, "terms": terms}
        storage.write_bytes(storage.join(run_dir, NON_FINITE_FILE), json.dumps(stop).encode())


class InMemoryFeed:
    """The whole train and test sets in this worker, sorted by a stable key; each epoch a slice of
    the epoch's permutation (see the module docstring)."""

    def __init__(self, config: TrainConfig, rank: int, world: int, device: torch.device):
        self.config, self.rank, self.world = config, rank, world
        self.images, self.labels = _load_sorted(ray.train.get_dataset_shard("train"), device)
        test_images, test_labels = _load_sorted(ray.train.get_dataset_shard("test"), device)
        # Disjoint slices: with all ranks' counts summed, every test image counts exactly once.
        self.test_images, self.test_labels = test_images[rank::world], test_labels[rank::world]
        self.train_rows, self.test_rows, self.per_rank = len(self.labels), len(test_labels), len(self.labels) // world
        _check_share(self.train_rows, world)
        # Once per run, the same on every rank (the same sorted images).
        neighbours = config.pairing == "neighbours"
        self.candidates = (
            nearest_in_class(self.images.cpu(), self.labels.cpu(), config.pairing_neighbours) if neighbours else None
        )

    def train_batches(self, epoch: int):
        order = epoch_order(self.labels.cpu(), self.config, epoch)[
            self.rank : self.per_rank * self.world : self.world
        ].to(self.labels.device)
        if self.config.pairing == "self":
            return ((self.images[index], self.labels[index]) for index in order.split(self.config.batch_size))
        partners = epoch_partners(self.labels.cpu(), self.config.seed, epoch, self.candidates).to(self.labels.device)
        return (
            (self.images[index], self.labels[index], self.images[partners[index]])
            for index in order.split(self.config.batch_size)
        )

    def test_batches(self):
        return (
            (self.test_images[s : s + EVAL_BATCH], self.test_labels[s : s + EVAL_BATCH])
            for s in range(0, len(self.test_labels), EVAL_BATCH)
        )


class StreamingFeed:
    """This worker's share of a data set folder, read by the worker itself every epoch (see
    `handvae.data.streaming`): the train rows shuffled, the test rows in order."""

    def __init__(self, plan: folders.FolderPlan, config: TrainConfig, rank: int, world: int):
        self.plan, self.config, self.rank, self.world = plan, config, rank, world
        self.train_rows, self.test_rows = plan.rows("train"), plan.rows("test")
        self.per_rank = self.train_rows // world
        _check_share(self.train_rows, world)

    def train_batches(self, epoch: int):
        seed = self.config.seed
        slices = epoch_slices([u.rows[0] for u in self.plan.units], self.world, self.rank, seed, epoch)
        return shuffled_batches(
            folders.read_slices(self.plan, "train", slices), self.config.batch_size, seed, epoch, self.rank
        )

    def test_batches(self):
        slices = epoch_slices(
            [u.rows[1] for u in self.plan.units], self.world, self.rank, self.config.seed, 0, shuffle=False
        )
        return in_order_batches(folders.read_slices(self.plan, "test", slices), EVAL_BATCH)


def _check_share(train_rows: int, world: int) -> None:
    if train_rows < world:
        raise DataError(f"{train_rows} training images cannot be shared by {world} workers")


def _load_sorted(shard, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = sorted_tensors(shard.iter_torch_batches(batch_size=8192))
    return images.to(device), labels.to(device)


def _all_sum(sums: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        sums = sums.to(ray.train.torch.get_device()) if dist.get_backend() == "nccl" else sums
        dist.all_reduce(sums)
    return sums.cpu()


def _report_with_checkpoint(record, rank, model, optimizer, epoch, config, history) -> None:
    """Rank 0 saves; every rank reports, because report is a barrier."""
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if rank == 0:
            state = TrainingState(
                model.state_dict(), optimizer.state_dict(), epoch, history, config.to_dict(), config.seed
            )
            state.save(directory)
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(record, checkpoint=checkpoint)


def _progress_line(record: dict, config: TrainConfig) -> str:
    detail = (
        f"detail_recon_loss {record['detail_recon_loss']:.4f}  detail_kl_loss {record['detail_kl_loss']:.2f}  "
        if config.model.detail_latent
        else ""
    )
    return (
        f"epoch {record['epoch']}/{config.epochs}  cat_loss {record['cat_loss']:.4f}  recon_loss {record['recon_loss']:.4f}  "
        f"kl_loss {record['kl_loss']:.3f}  {detail}test_accuracy {record['test_accuracy']:.2%}  "
        f"recon_accuracy {record['recon_accuracy']:.2%}  {record['images_per_second']:.0f} images/s"
    )


def _tensorboard_writer(run_dir: str):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=os.path.join(run_dir, "tensorboard"))
