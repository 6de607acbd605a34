"""The supervised VAE of the seed notebook: an encoder that classifies a character and infers a
latent style, and a decoder that draws a character from a style and a class; optionally a detail
code beside the style, and a second decoder that draws a sample's own character from both.

Pure torch, no Ray. The model rebuilds from its `VAEConfig` alone, which every checkpoint carries
(see `handvae.formats.checkpoints`).
"""

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from handvae.errors import require
from handvae.labels import NUM_CLASSES

MAX_SIZE = 4096
"""The largest size a VAEConfig field takes: larger layers would not fit in memory, and a config
file's typo (10**30 filters) is refused here rather than as an allocation error in a worker."""


@dataclass(frozen=True)
class VAEConfig:
    """Sizes of the model; the defaults are the seed's."""

    input_size: int = 28
    """Side of the square input image in pixels; two stride-2 convolutions need a multiple of 4."""
    num_classes: int = NUM_CLASSES
    """Number of character classes the encoder predicts and the decoder is conditioned on."""
    num_filters: int = 32
    """Channels of both convolutions and both transposed convolutions."""
    num_latent: int = 64
    """Dimension of the latent style vector z."""
    detail_latent: int = 0
    """Dimension of the detail code d beside z (0: none, the seed). z is the style that transfers:
    the decoder draws any character in it. d, lightly weighed by the KL
    (`LossWeights.detail_kl_weight`), keeps what makes a sample itself; a second decoder reads z
    and d together to draw a sample's own character as it was written (own-class generation)."""

    def __post_init__(self):
        for field in fields(self):
            least = 0 if field.name == "detail_latent" else 1
            require(
                "VAEConfig.",
                field.name,
                getattr(self, field.name),
                int,
                lambda v, least=least: least <= v <= MAX_SIZE,
                f"an integer in [{least}, {MAX_SIZE}]",
            )
        require("VAEConfig.", "input_size", self.input_size, int, lambda v: v % 4 == 0, "a multiple of 4")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ModelOutput(NamedTuple):
    """What `VAE.forward` returns; the detail fields are None for a model without a detail code."""

    x_recon: torch.Tensor
    """(B, 1, S, S) image logits drawn from z."""
    z_mean: torch.Tensor
    log_z_var: torch.Tensor
    y_logits: torch.Tensor
    detail_recon: torch.Tensor | None = None
    """(B, 1, S, S) image logits drawn from z and d."""
    detail_mean: torch.Tensor | None = None
    detail_log_var: torch.Tensor | None = None


class VAE(nn.Module):
    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = config
        filters, side = config.num_filters, config.input_size // 4
        features = filters * side * side

        self.encoder = nn.Sequential(
            nn.Conv2d(1, filters, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(filters, filters, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Linear(features, 128), nn.ReLU(), nn.Linear(128, config.num_classes))
        self.z_mean = nn.Linear(features, config.num_latent)
        self.z_log_var = nn.Linear(features, config.num_latent)

        self.label_to_features, self.z_to_features, self.decoder = _decoder_layers(config, config.num_latent)
        # Mean posterior latent of each class over the training set, filled at the end of training:
        # what `Drawing.class_shift` moves styles by. Zeros (no shift) until then.
        self.register_buffer("class_latent_means", torch.zeros(config.num_classes, config.num_latent))
        if config.detail_latent:
            self.detail_mean = nn.Linear(features, config.detail_latent)
            self.detail_log_var = nn.Linear(features, config.detail_latent)
            self.detail_decoder = nn.ModuleList(_decoder_layers(config, config.num_latent + config.detail_latent))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (B, 1, S, S) in [0, 1] -> (z_mean, log_z_var, y_logits)."""
        return self.encode_with_detail(x)[:3]

    def encode_with_detail(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`encode`'s three, then (detail_mean, detail_log_var) of the detail code (None, None without one)."""
        h = self.encoder(x)
        detail = (self.detail_mean(h), self.detail_log_var(h)) if self.config.detail_latent else (None, None)
        return self.z_mean(h), self.z_log_var(h), self.classifier(h), *detail

    @staticmethod
    def sample(z_mean: torch.Tensor, log_z_var: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Reparameterised draw z = mean + sigma * eps, so gradients flow through mean and variance.
        eps is `noise` when given (reproducible draws), else fresh standard normal noise."""
        eps = torch.randn_like(z_mean) if noise is None else noise.to(z_mean)
        return z_mean + torch.exp(0.5 * log_z_var) * eps

    def decode(self, z: torch.Tensor, y_logits: torch.Tensor) -> torch.Tensor:
        """Style z (B, latent) and class logits (B, classes) -> image logits (B, 1, S, S).

        As in the seed, the class input goes through a softmax first, whether it is the encoder's
        logits or a one-hot vector.
        """
        return _draw(self.label_to_features, self.z_to_features, self.decoder, z, y_logits)

    def decode_detail(self, z: torch.Tensor, detail: torch.Tensor, y_logits: torch.Tensor) -> torch.Tensor:
        """`decode` by the detail decoder, which reads the detail code (B, detail_latent) beside z."""
        return _draw(*self.detail_decoder, torch.cat([z, detail], dim=1), y_logits)

    def forward(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        decoder_labels: torch.Tensor | None = None,
        detail: bool = True,
    ) -> ModelOutput:
        """Reconstructions of x from a posterior draw of z (and d); `noise` as in `sample`, z's
        then d's. `detail=False` leaves the detail decoder out (its fields None): training needs
        it, the seed's evaluation figures and reconstructions read z's alone.

        The decoder draws the class the encoder predicts (the seed), except for images whose entry
        in `decoder_labels` (B,) is a class 0..C-1: those are drawn as that class (-1: predicted).
        """
        z_mean, log_z_var, y_logits, detail_mean, detail_log_var = self.encode_with_detail(x)
        latent = self.config.num_latent
        z = self.sample(z_mean, log_z_var, None if noise is None else noise[:, :latent])
        class_input = y_logits
        if decoder_labels is not None:
            given = (decoder_labels >= 0).unsqueeze(1)
            class_input = torch.where(
                given, one_hot_logits(decoder_labels.clamp_min(0), self.config.num_classes), y_logits
            )
        x_recon = self.decode(z, class_input)
        if not (detail and self.config.detail_latent):
            return ModelOutput(x_recon, z_mean, log_z_var, y_logits)
        detail = self.sample(detail_mean, detail_log_var, None if noise is None else noise[:, latent:])
        # z.detach(): z is trained by the style decoder alone, so it stays a style that transfers
        # between characters; the detail decoder reads it but does not shape it.
        detail_recon = self.decode_detail(z.detach(), detail, class_input)
        return ModelOutput(x_recon, z_mean, log_z_var, y_logits, detail_recon, detail_mean, detail_log_var)


def _decoder_layers(config: VAEConfig, latent: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(label_to_features, z_to_features, decoder): the seed's decoder, reading `latent` numbers."""
    filters, side = config.num_filters, config.input_size // 4
    features = filters * side * side
    label_to_features = nn.Sequential(nn.Linear(config.num_classes, 128), nn.ReLU(), nn.Linear(128, features))
    z_to_features = nn.Linear(latent, features)
    decoder = nn.Sequential(
        nn.Unflatten(1, (filters, side, side)),
        nn.ConvTranspose2d(filters, filters, kernel_size=4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(filters, 1, kernel_size=4, stride=2, padding=1),
    )
    return label_to_features, z_to_features, decoder


def _draw(
    label_to_features: nn.Module, z_to_features: nn.Module, decoder: nn.Module, z: torch.Tensor, y_logits: torch.Tensor
) -> torch.Tensor:
    return decoder(label_to_features(F.softmax(y_logits, dim=1)) + z_to_features(z))


def one_hot_logits(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits whose softmax is the one-hot vector of each label (0 for the class, -1e4 elsewhere):
    the class input of `VAE.decode` for a known class, as a confident encoder gives it."""
    return (F.one_hot(labels.long(), num_classes).float() - 1.0) * 1e4


def model_inputs(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (B, 28, 28) and labels (B,) -> float images (B, 1, 28, 28) in [0, 1] and int64 labels,
    what the seed's ToTensor() gives the model."""
    return images.unsqueeze(1).float().div_(255.0), labels.long()
