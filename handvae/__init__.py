"""handvae: distributed training and batch generation of handwritten characters with a supervised VAE.

Names are imported on first use: Ray worker processes import `handvae.runtime` at start-up, and
data workers should not pay for importing torch.
"""

import importlib

_EXPORTS = {
    "CHARSET": "handvae.labels",
    "NUM_CLASSES": "handvae.labels",
    "char_to_label": "handvae.labels",
    "label_to_char": "handvae.labels",
    "VAE": "handvae.model.vae",
    "VAEConfig": "handvae.model.vae",
    "ModelFileError": "handvae.errors",
    "load_model": "handvae.formats.model_file",
    "save_model": "handvae.formats.model_file",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'handvae' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
