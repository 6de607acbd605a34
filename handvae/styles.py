"""Styles and characters: encode handwriting samples into latent styles, draw characters in them.

Pure torch, no Ray: the generation job and the evaluation report both call these.
"""

from collections.abc import Sequence

import torch

from handvae.engine import model_inputs, seeded_normal
from handvae.model import VAE, one_hot_logits


@torch.no_grad()
def encode_styles(
    model: VAE, images: torch.Tensor, style_keys: Sequence[Sequence[int]], samples_per_style: int = 1, randomness: float = 1.0, average: int = 1
) -> torch.Tensor:
    """uint8 images (N, S, S) -> styles z (N, samples_per_style, latent).

    Each style is drawn from the image's posterior with its spread scaled by `randomness`
    (0: the posterior mean) and averaged over `average` draws. Each image draws its noise from its
    own key (a tuple of non-negative ints), so a style does not depend on which other images share
    its batch or worker.
    """
    if len(style_keys) != len(images):
        raise ValueError(f"{len(images)} images need as many style keys, got {len(style_keys)}")
    x, _ = model_inputs(images, torch.zeros(len(images), dtype=torch.long))
    z_mean, log_z_var, _ = model.encode(x.to(next(model.parameters()).device))
    latent = z_mean.shape[1]
    noise = seeded_normal(style_keys, samples_per_style * average * latent)
    noise = noise.view(len(images), samples_per_style, average, latent).to(z_mean.device)
    spread = randomness * torch.exp(0.5 * log_z_var)
    return (z_mean[:, None, None, :] + spread[:, None, None, :] * noise).mean(dim=2)


@torch.no_grad()
def draw(model: VAE, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Styles z (M, latent) and labels (M,) -> uint8 images (M, S, S), white ink on black.

    The decoder applies a softmax to its class input. The seed's last cell feeds it a one-hot
    vector, which that softmax flattens to 0.07 against 0.03: the class barely shows, and every
    character comes out in the shape of the style's own (measured: 5% of such characters are the
    one asked for). Logits of 0 and -1e4 make the softmax give the one-hot vector itself, the class
    probabilities a confident encoder feeds the decoder in training.
    """
    class_input = one_hot_logits(labels, model.config.num_classes).to(z.device)
    return model.decode(z, class_input).sigmoid().mul(255).round().to(torch.uint8).squeeze(1).cpu()


@torch.no_grad()
def reconstruct(model: VAE, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, S, S) -> (reconstructions as uint8 (N, S, S), predicted labels (N,)),
    through forward() as in the seed's comparison of originals and reconstructions."""
    x, _ = model_inputs(images, torch.zeros(len(images), dtype=torch.long))
    x_recon, _, _, y_logits = model(x.to(next(model.parameters()).device))
    return x_recon.sigmoid().mul(255).round().to(torch.uint8).squeeze(1).cpu(), y_logits.argmax(dim=1).cpu()
