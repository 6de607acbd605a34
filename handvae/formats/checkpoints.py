"""The run folder STORAGE/NAME/ of a training run: its file names, the one training-state contract
(`TrainingState`, a file in each of Ray Train's checkpoint folders), and `RunCheckpoints`, which
finds the newest readable one; `handvae.train.worker` saves with the first, and resumes and exports
model.pt with the second.
"""

import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
import torch

from handvae import storage
from handvae.errors import ModelFileError
from handvae.formats.model_file import check_state, unwrap
from handvae.model.vae import VAE

CONFIG_FILE = "config.json"
"""The run's recipe and data, written by the driver before the workers start."""
METRICS_FILE = "metrics.jsonl"
"""One JSON record per finished epoch, written by rank 0."""
MODEL_FILE = "model.pt"
"""The model file (`handvae.formats.model_file`), exported from the last checkpoint."""
REPORT_DIR = "report"
"""The evaluation report of the final model (`handvae evaluate`'s folder)."""
FAULT_MARKER = ".fault-injected"
"""Written by rank 0 when it does the fault HANDVAE_FAULT_INJECTION asks for (`handvae.train.worker.FaultInjection`): once per run."""
NON_FINITE_FILE = "stopped-non-finite.json"
"""Written by rank 0 when training stops at a non-finite loss: the epoch, the step and the terms."""
STATE_FILE = "train_state.pt"
STATE_FORMAT = "handvae.training_state"
CHECKPOINT_PREFIX = "checkpoint_"
"""Ray Train's checkpoint folders in a run folder: checkpoint_<date>_<time.microseconds>, so their
names sort in the order they were written."""
RETIRED_CONFIG_KEYS = ("fail_once_at_epoch",)
"""TrainConfig fields that older checkpoints still carry (always null there): dropped on reading,
so that their runs resume."""


@dataclass
class TrainingState:
    """Everything a training run resumes from, one file (STATE_FILE) per checkpoint folder."""

    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    """torch.optim state_dict of the run's Adam."""
    epoch: int
    """The last finished epoch (1-based); the run resumes at epoch + 1."""
    history: list[dict[str, Any]]
    """One metrics record per epoch so far, epochs 1..epoch."""
    config: dict[str, Any]
    """The run's TrainConfig.to_dict(): resuming with another recipe is refused against it."""
    seed: int
    """The RNG state: training re-seeds from (seed, epoch, rank) every epoch, so the seed is all of it."""

    def save(self, directory: str) -> None:
        """Into a local folder that becomes a Ray checkpoint (ray.train.Checkpoint.from_directory)."""
        torch.save({"format": STATE_FORMAT, **vars(self)}, os.path.join(directory, STATE_FILE))

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        unwrap(model).load_state_dict(self.model_state)
        optimizer.load_state_dict(self.optimizer_state)


def load_training_state(folder: str) -> TrainingState:
    """The state in a checkpoint folder (a local path or URI), checked against its own config:
    keys, shapes, the optimizer's parameter groups and the history. A ModelFileError names the file."""
    from handvae.train.config import TrainConfig  # config imports the model: no import at module level

    path = storage.join(folder, STATE_FILE)
    try:
        data = storage.read_bytes(path)
        if data is None:
            raise ModelFileError(f"{path}: missing")
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.pop("format", STATE_FORMAT) != STATE_FORMAT:
            raise ModelFileError(f"{path}: not a handvae training state")
        state = TrainingState(**payload)
        state.config = {k: v for k, v in state.config.items() if k not in RETIRED_CONFIG_KEYS}
        config = TrainConfig.from_dict(state.config)
        model = VAE(config.model)
        check_state(path, state.model_state, model.state_dict())
        state.restore(model, torch.optim.Adam(model.parameters(), lr=config.learning_rate))
        epochs = [record.get("epoch") for record in state.history]
        if not (isinstance(state.epoch, int) and state.epoch >= 1 and epochs == list(range(1, state.epoch + 1))):
            raise ModelFileError(f"{path}: epoch {state.epoch!r} does not match its history of epochs {epochs}")
        if state.seed != config.seed:
            raise ModelFileError(f"{path}: seed {state.seed!r} is not its config's seed {config.seed}")
    except ModelFileError:
        raise
    except Exception as exc:  # torch, the dataclass, the config and the optimizer raise many types
        raise ModelFileError(f"{path}: not a readable training state ({type(exc).__name__}: {exc})") from None
    return state


class RunCheckpoints:
    """The checkpoints of a run folder (local or URI), read from the storage itself, not from Ray's
    snapshot of them: Ray Train's get_checkpoint() offers only the latest, and fails the run if it is
    damaged. `latest()` skips damaged ones, newest first, with a warning naming each."""

    def __init__(self, run_dir: str, warn: Callable[[str], None] | None = None):
        self.run_dir = run_dir
        self.warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))

    def folders(self) -> list[str]:
        """The checkpoint folders, newest first."""
        fs, root = storage.resolve_input(self.run_dir)
        listing = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        names = [
            info.base_name
            for info in listing
            if info.type == pafs.FileType.Directory and info.base_name.startswith(CHECKPOINT_PREFIX)
        ]
        return [storage.join(self.run_dir, name) for name in sorted(names, reverse=True)]

    def latest(self, quiet: bool = False) -> tuple[str, TrainingState] | None:
        """The newest readable checkpoint folder and its state; None in a run folder without any.
        Raises ModelFileError when there are checkpoints and none is readable."""
        damaged = []
        for folder in self.folders():
            try:
                state = load_training_state(folder)
            except ModelFileError as exc:
                damaged.append(exc.message)
                continue
            if damaged and not quiet:
                self.warn(
                    f"skipped {len(damaged)} damaged checkpoint(s) ({'; '.join(damaged)}); resuming from {folder} (epoch {state.epoch})"
                )
            return folder, state
        if damaged:
            raise ModelFileError(
                f"{self.run_dir}: no readable checkpoint to resume from ({'; '.join(damaged)}); "
                "train under another --run-name to start afresh"
            )
        return None
