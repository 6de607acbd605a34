"""Styles and characters: encode handwriting samples into latent styles, draw characters in them.

Pure torch, no Ray: the generation job, the evaluation report and the judge's assessment call these.
"""

from collections.abc import Sequence

import torch

from handvae.config import Drawing
from handvae.engine import model_inputs, seeded_normal
from handvae.model import VAE, one_hot_logits


@torch.no_grad()
def draw_in_styles(
    model: VAE,
    images: torch.Tensor,
    style_keys: Sequence[Sequence[int]],
    labels: torch.Tensor,
    drawing: Drawing = Drawing(),
    samples_per_style: int = 1,
    randomness: float = 1.0,
    average: int = 1,
) -> torch.Tensor:
    """Every class in `labels` (C,) drawn in the style of each of the uint8 `images` (N, S, S):
    uint8 (N, samples_per_style, C, S, S), white ink on black.

    Each style is drawn from its image's posterior with the spread scaled by `randomness` (0: the
    posterior mean), averaged over `average` draws. Each image's noise comes from its own key (a
    tuple of non-negative ints), so a style does not depend on the other images of its batch.

    The decoder applies a softmax to its class input. The seed's last cell feeds it a one-hot
    vector, which that softmax flattens to 0.07 against 0.03: the class barely shows, and every
    character comes out in the shape of the style's own (measured: 5% of such characters are the
    one asked for). Logits of 0 and -1e4 make the softmax give the one-hot vector itself, the class
    probabilities a confident encoder feeds the decoder in training.
    """
    if len(style_keys) != len(images):
        raise ValueError(f"{len(images)} images need as many style keys, got {len(style_keys)}")
    device = next(model.parameters()).device
    x, _ = model_inputs(images.to(device), torch.zeros(len(images), dtype=torch.long, device=device))
    z_mean, log_z_var, y_logits = model.encode(x)
    count, latent, classes = len(images), z_mean.shape[1], len(labels)
    noise = seeded_normal(style_keys, samples_per_style * average * latent).to(device)
    noise = noise.view(count, samples_per_style, average, latent)
    z = (z_mean[:, None, None] + randomness * torch.exp(0.5 * log_z_var)[:, None, None] * noise).mean(dim=2)  # (N, S, L)
    z = z[:, :, None].expand(count, samples_per_style, classes, latent)
    labels = labels.to(device)
    if drawing.class_shift:
        means = model.class_latent_means
        z = z - means[y_logits.argmax(dim=1)][:, None, None] + means[labels][None, None]
    class_input = one_hot_logits(labels, model.config.num_classes).expand(count, samples_per_style, classes, -1)
    logits = model.decode(z.reshape(-1, latent), class_input.reshape(-1, model.config.num_classes))
    images_out = logits.mul(drawing.sharpness).sigmoid().mul(255).round().to(torch.uint8)
    return images_out.view(count, samples_per_style, classes, *images.shape[1:]).cpu()


@torch.no_grad()
def reconstruct(model: VAE, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, S, S) -> (reconstructions as uint8 (N, S, S), predicted labels (N,)),
    through forward() as in the seed's comparison of originals and reconstructions."""
    x, _ = model_inputs(images, torch.zeros(len(images), dtype=torch.long))
    x_recon, _, _, y_logits = model(x.to(next(model.parameters()).device))
    return x_recon.sigmoid().mul(255).round().to(torch.uint8).squeeze(1).cpu(), y_logits.argmax(dim=1).cpu()
