"""The one model-file contract: a torch file holding a plain dict, loaded with weights_only=True.

    {"format": "handvae.model", "version": 1, "model_config": {...VAEConfig...},
     "model_state": {...state_dict...}, "metadata": {...str/number/list/dict only...}}

The model rebuilds from the file alone; nothing in it is unpickled as code.

The one training-state contract (`TrainingState`, a file in each of Ray Train's checkpoint folders)
and `RunCheckpoints`, which finds the newest readable one in a run folder; `handvae.train` saves
with the first and resumes and exports model.pt with the second.
"""

import io
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import pyarrow.fs as pafs
import torch

from handvae import storage
from handvae.data.records import resolve_path
from handvae.errors import ModelFileError
from handvae.model import VAE, VAEConfig

FORMAT = "handvae.model"
VERSION = 1


def save_model(path: str | os.PathLike, model: VAE, metadata: dict[str, Any] | None = None) -> None:
    """Write to a local path or a URI, whole: a reader never sees a half-written file."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": _unwrap(model).config.to_dict(),
        "model_state": state,
        "metadata": metadata or {},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes(str(path), buffer.getvalue())


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> VAE:
    """The model in a file written by `save_model`, in eval mode."""
    model, _ = load_model_and_metadata(path, map_location)
    return model


def load_model_and_metadata(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[VAE, dict[str, Any]]:
    """A local path or a URI (s3://...: where a cluster's training run writes its model)."""
    path = str(path)
    try:
        data = storage.read_bytes(path)
    except (OSError, ValueError) as exc:  # pyarrow: unknown scheme, no credentials, access denied
        raise ModelFileError(f"{path}: cannot read the model file ({exc})") from exc
    if data is None:
        raise ModelFileError(f"{path}: model file not found")
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ModelFileError(f"{path}: not a readable handvae model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a handvae model file (expected a dict with format={FORMAT!r})")
    if payload.get("version") != VERSION:
        raise ModelFileError(f"{path}: model file version {payload.get('version')!r}, this handvae reads version {VERSION}")
    try:
        config = VAEConfig(**payload["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid model_config: {exc}") from exc
    model = VAE(config)
    _check_state(path, payload.get("model_state"), model.state_dict())
    model.load_state_dict(payload["model_state"], strict="class_latent_means" in payload["model_state"])
    model.eval()
    return model, dict(payload.get("metadata") or {})


def _check_state(path: str, state: Any, expected: dict[str, torch.Tensor]) -> None:
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: model_state is missing or not a dict of tensors")
    # Files from before the model kept its class latent means load with zeros there (no class shift).
    missing = sorted(set(expected) - set(state) - {"class_latent_means"})
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f"{path}: model_state does not match the model: missing {missing}, unexpected {unexpected}")
    for name, tensor in expected.items():
        if name not in state:
            continue
        got = state[name]
        if not isinstance(got, torch.Tensor) or got.shape != tensor.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ModelFileError(f"{path}: {name} has shape {shape}, the config needs {tuple(tensor.shape)}")


def _unwrap(model: torch.nn.Module) -> VAE:
    """The VAE inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


# ---- training state: what a run resumes from ---------------------------------------------------

STATE_FILE = "train_state.pt"
STATE_FORMAT = "handvae.training_state"
CHECKPOINT_PREFIX = "checkpoint_"
"""Ray Train's checkpoint folders in a run folder: checkpoint_<date>_<time.microseconds>, so their
names sort in the order they were written."""
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"
"""Ray Train's list of a run's checkpoints, which it reloads on resume."""


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
        _unwrap(model).load_state_dict(self.model_state)
        optimizer.load_state_dict(self.optimizer_state)


def load_training_state(folder: str) -> TrainingState:
    """The state in a checkpoint folder (a local path or URI), checked against its own config:
    keys, shapes, the optimizer's parameter groups and the history. A ModelFileError names the file."""
    from handvae.config import TrainConfig  # config imports the model: no import at module level

    path = storage.join(folder, STATE_FILE)
    try:
        data = storage.read_bytes(path)
        if data is None:
            raise ModelFileError(f"{path}: missing")
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.pop("format", STATE_FORMAT) != STATE_FORMAT:
            raise ModelFileError(f"{path}: not a handvae training state")
        state = TrainingState(**payload)
        config = TrainConfig.from_dict(state.config)
        model = VAE(config.model)
        _check_state(path, state.model_state, model.state_dict())
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
        self._warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))

    def folders(self) -> list[str]:
        """The checkpoint folders, newest first."""
        fs, root = resolve_path(self.run_dir)
        listing = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        names = [info.base_name for info in listing if info.type == pafs.FileType.Directory and info.base_name.startswith(CHECKPOINT_PREFIX)]
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
                self._warn(f"skipped {len(damaged)} damaged checkpoint(s) ({'; '.join(damaged)}); resuming from {folder} (epoch {state.epoch})")
            return folder, state
        if damaged:
            raise ModelFileError(
                f"{self.run_dir}: no readable checkpoint to resume from ({'; '.join(damaged)}); "
                "train under another --run-name to start afresh"
            )
        return None

    def set_aside_stale_ray_snapshot(self) -> None:
        """Ray refuses to start a run whose snapshot lists a checkpoint folder that is gone (or is
        not JSON). Such a snapshot is renamed to RAY_SNAPSHOT.stale, so that Ray starts a new list;
        the folders themselves are read by `latest()`, so nothing is lost."""
        path = storage.join(self.run_dir, RAY_SNAPSHOT)
        data = storage.read_bytes(path)
        if data is None:
            return
        try:
            listed = [result["checkpoint_dir_name"] for result in json.loads(data)["checkpoint_results"]]
            present = {os.path.basename(folder.rstrip("/")) for folder in self.folders()}
            missing = [name for name in listed if name not in present]
        except (ValueError, KeyError, TypeError) as exc:
            missing, reason = None, f"not readable ({exc})"
        else:
            reason = f"lists checkpoint folder(s) that are gone: {', '.join(missing)}"
        if missing == []:
            return
        fs, fs_path = resolve_path(path)
        fs.move(fs_path, fs_path + ".stale")
        self._warn(f"{path} {reason}; set aside as {RAY_SNAPSHOT}.stale so that Ray accepts the run folder")

