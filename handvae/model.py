"""The supervised VAE of the seed notebook: an encoder that classifies a character and infers a
latent style, and a decoder that draws a character from a style and a class.

Pure torch, no Ray. The model rebuilds from its `VAEConfig` alone, which every checkpoint carries
(see `handvae.checkpoint`).
"""

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from handvae.labels import NUM_CLASSES


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

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VAEConfig.{field.name} must be a positive integer, got {value!r}")
        if self.input_size % 4:
            raise ValueError(f"VAEConfig.input_size must be a multiple of 4, got {self.input_size}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


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

        self.label_to_features = nn.Sequential(
            nn.Linear(config.num_classes, 128), nn.ReLU(), nn.Linear(128, features)
        )
        self.z_to_features = nn.Linear(config.num_latent, features)
        # Mean posterior latent of each class over the training set, filled at the end of training:
        # what `Drawing.class_shift` moves styles by. Zeros (no shift) until then.
        self.register_buffer("class_latent_means", torch.zeros(config.num_classes, config.num_latent))
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (filters, side, side)),
            nn.ConvTranspose2d(filters, filters, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(filters, 1, kernel_size=4, stride=2, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (B, 1, S, S) in [0, 1] -> (z_mean, log_z_var, y_logits)."""
        h = self.encoder(x)
        return self.z_mean(h), self.z_log_var(h), self.classifier(h)

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
        h = self.label_to_features(F.softmax(y_logits, dim=1)) + self.z_to_features(z)
        return self.decoder(h)

    def forward(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, decoder_labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (x_recon_logits, z_mean, log_z_var, y_logits), the seed's order; `noise` as in `sample`.

        The decoder draws the class the encoder predicts (the seed), except for images whose entry
        in `decoder_labels` (B,) is a class 0..C-1: those are drawn as that class (-1: predicted).
        """
        z_mean, log_z_var, y_logits = self.encode(x)
        z = self.sample(z_mean, log_z_var, noise)
        class_input = y_logits
        if decoder_labels is not None:
            given = (decoder_labels >= 0).unsqueeze(1)
            class_input = torch.where(given, one_hot_logits(decoder_labels.clamp_min(0), self.config.num_classes), y_logits)
        return self.decode(z, class_input), z_mean, log_z_var, y_logits


def one_hot_logits(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits whose softmax is the one-hot vector of each label (0 for the class, -1e4 elsewhere):
    the class input of `VAE.decode` for a known class, as a confident encoder gives it."""
    return (F.one_hot(labels.long(), num_classes).float() - 1.0) * 1e4
