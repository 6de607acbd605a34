"""handvae: distributed training and batch generation of handwritten characters with a supervised VAE."""

from handvae.checkpoint import ModelFileError, load_model, save_model
from handvae.labels import CHARSET, NUM_CLASSES, char_to_label, label_to_char
from handvae.model import VAE, VAEConfig

__all__ = [
    "CHARSET",
    "NUM_CLASSES",
    "VAE",
    "VAEConfig",
    "ModelFileError",
    "char_to_label",
    "label_to_char",
    "load_model",
    "save_model",
]
