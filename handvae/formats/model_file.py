"""The one model-file contract, for the VAE and the judge: a torch file holding a plain dict,
loaded with weights_only=True, read and written through `handvae.storage` (a local path or any URI,
whole: a reader never sees a half-written file).

    {"format": "handvae.model" | "handvae.judge", "version": 1, "model_config": {...},
     "model_state": {...state_dict...}, "metadata": {...str/number/list/dict only...}}

A model rebuilds from its file alone; nothing in it is unpickled as code. Judge files written
before the judge shared this contract ({"format": "handvae.judge", "state": ..., "metadata": ...})
still load.
"""

import io
import os
from typing import Any

import torch

from handvae import storage
from handvae.errors import ModelFileError
from handvae.model.judge import Judge
from handvae.model.vae import VAE, VAEConfig

FORMAT = "handvae.model"
JUDGE_FORMAT = "handvae.judge"
VERSION = 1


def save_model(path: str | os.PathLike, model: VAE, metadata: dict[str, Any] | None = None) -> None:
    """Write to a local path or a URI, whole: a reader never sees a half-written file."""
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": unwrap(model).config.to_dict(),
        "model_state": state,
        "metadata": metadata or {},
    }
    _write(path, payload)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> VAE:
    """The model in a file written by `save_model`, in eval mode."""
    model, _ = load_model_and_metadata(path, map_location)
    return model


def load_model_and_metadata(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[VAE, dict[str, Any]]:
    """A local path or a URI (s3://...: where a cluster's training run writes its model)."""
    path = str(path)
    payload = _read(path, FORMAT, "model")
    if payload.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: model file version {payload.get('version')!r}, this handvae reads version {VERSION}"
        )
    try:
        config = VAEConfig(**payload["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid model_config: {exc}") from exc
    model = VAE(config)
    check_state(path, payload.get("model_state"), model.state_dict())
    model.load_state_dict(payload["model_state"], strict="class_latent_means" in payload["model_state"])
    model.to(map_location).eval()
    return model, dict(payload.get("metadata") or {})


def check_state(path: str, state: Any, expected: dict[str, torch.Tensor]) -> None:
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: model_state is missing or not a dict of tensors")
    # Files from before the model kept its class latent means load with zeros there (no class shift).
    missing = sorted(set(expected) - set(state) - {"class_latent_means"})
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: model_state does not match the model: missing {missing}, unexpected {unexpected}"
        )
    for name, tensor in expected.items():
        if name not in state:
            continue
        got = state[name]
        if not isinstance(got, torch.Tensor) or got.shape != tensor.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ModelFileError(f"{path}: {name} has shape {shape}, the config needs {tuple(tensor.shape)}")


def unwrap(model: torch.nn.Module) -> VAE:
    """The VAE inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


def save_judge(path: str, judge: Judge, metadata: dict[str, Any]) -> None:
    payload = {
        "format": JUDGE_FORMAT,
        "version": VERSION,
        "model_config": {},
        "model_state": judge.state_dict(),
        "metadata": metadata,
    }
    _write(path, payload)


def load_judge(path: str) -> tuple[Judge, dict[str, Any]]:
    """The judge in a file written by `save_judge` (a local path or a URI), in eval mode."""
    payload = _read(path, JUDGE_FORMAT, "judge")
    judge = Judge()
    try:
        judge.load_state_dict(payload["model_state"] if "model_state" in payload else payload["state"])
    except (RuntimeError, KeyError) as exc:
        raise ModelFileError(f"{path}: judge weights do not fit: {exc}") from exc
    return judge.eval(), dict(payload.get("metadata") or {})


def _write(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes(str(path), buffer.getvalue())


def _read(path: str, file_format: str, what: str) -> dict[str, Any]:
    """The file's dict, checked to be of `file_format`; a ModelFileError names the file otherwise."""
    kind = "handvae model" if file_format == FORMAT else what
    storage.require(path, f"{what} file", ModelFileError)  # a folder is named as one, not as "not found"
    try:
        data = storage.read_bytes(path)
    except (OSError, ValueError) as exc:  # pyarrow: unknown scheme, no credentials, access denied
        raise ModelFileError(f"{path}: cannot read the {what} file ({exc})") from exc
    if data is None:  # removed since
        raise ModelFileError(f"{path}: {what} file not found")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ModelFileError(f"{path}: not a readable {kind} file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise ModelFileError(f"{path}: not a handvae {what} file (expected a dict with format={file_format!r})")
    return payload
