"""The seed's three loss terms and their weighted sum. Pure torch, no Ray."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from handvae.errors import require
from handvae.model.vae import ModelOutput


@dataclass(frozen=True)
class LossTerms:
    """The seed's three terms, each as the seed computes it: batch means, or one value per image."""

    cat: torch.Tensor
    """Cross-entropy of the class logits."""
    recon: torch.Tensor
    """Binary cross-entropy of the reconstruction logits against the image, mean over pixels."""
    kl: torch.Tensor
    """KL divergence of the posterior from N(0, I), summed over latents."""
    detail_recon: torch.Tensor
    """`recon` of the detail decoder's reconstruction (0 for a model without a detail code)."""
    detail_kl: torch.Tensor
    """`kl` of the detail code's posterior (0 without one)."""


@dataclass(frozen=True)
class LossWeights:
    """How the terms combine: `cat_weight * cat + recon + min(epoch * kl_step, kl_max) * kl` (the seed's
    schedule, without a cap), plus `detail_recon + detail_kl_weight * detail_kl` for a model with a
    detail code."""

    cat_weight: float = 0.1
    """Weight of the classification term."""
    kl_step: float = 0.001
    """KL weight added per epoch; epochs count from 1, so epoch 1 uses kl_step."""
    kl_max: float | None = None
    """Cap on the KL weight; None: none (the seed's weight grows without bound)."""
    detail_kl_weight: float = 0.0003
    """KL weight of the detail code, from the first epoch: light enough that d keeps nearly all of
    a sample (docs/results/recipes.md: a z at this weight reconstructs 98.0% of pixels right, at the
    default's 0.01 92.6%)."""

    def __post_init__(self):
        for name in ("cat_weight", "kl_step", "kl_max", "detail_kl_weight"):
            value = getattr(self, name)
            if name == "kl_max" and value is None:
                continue
            require("LossWeights.", name, value, (int, float), lambda v: 0 <= v < math.inf, "a finite number >= 0")

    def kl_weight(self, epoch: int) -> float:
        weight = epoch * self.kl_step
        return weight if self.kl_max is None else min(weight, self.kl_max)


def kl_divergence(z_mean: torch.Tensor, log_z_var: torch.Tensor) -> torch.Tensor:
    """Per image: -0.5 * sum over latents of (1 + log var - mean^2 - var)."""
    return -0.5 * torch.sum(1 + log_z_var - z_mean.pow(2) - log_z_var.exp(), dim=1)


def loss_terms(
    x: torch.Tensor,
    y: torch.Tensor,
    out: ModelOutput,
    per_image: bool = False,
    detail_target: torch.Tensor | None = None,
) -> LossTerms:
    """The terms for images x in [0, 1], labels y, and the model's forward output: batch means
    (what training minimises), or with per_image=True one value per image (what evaluation sums).
    `detail_target`: what the detail decoder is to draw (pair training); x itself when None."""
    reduction = "none" if per_image else "mean"
    cat = F.cross_entropy(out.y_logits, y, reduction=reduction)
    recon, kl = _image_terms(x, out.x_recon, out.z_mean, out.log_z_var, per_image)
    if out.detail_recon is None:
        detail_recon = detail_kl = torch.zeros_like(recon)
    else:
        target = x if detail_target is None else detail_target
        detail_recon, detail_kl = _image_terms(target, out.detail_recon, out.detail_mean, out.detail_log_var, per_image)
    return LossTerms(cat=cat, recon=recon, kl=kl, detail_recon=detail_recon, detail_kl=detail_kl)


def _image_terms(x, recon_logits, mean, log_var, per_image: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction BCE averaged over pixels, KL): per image, or their batch means."""
    recon = F.binary_cross_entropy_with_logits(recon_logits, x, reduction="none").flatten(1).mean(dim=1)
    kl = kl_divergence(mean, log_var)
    return (recon, kl) if per_image else (recon.mean(), kl.mean())


def total_loss(terms: LossTerms, weights: LossWeights, epoch: int) -> torch.Tensor:
    """The seed's objective at a 1-based epoch."""
    if epoch < 1:
        raise ValueError(f"epoch counts from 1, got {epoch}")
    loss = weights.cat_weight * terms.cat + terms.recon + weights.kl_weight(epoch) * terms.kl
    return loss + terms.detail_recon + weights.detail_kl_weight * terms.detail_kl
