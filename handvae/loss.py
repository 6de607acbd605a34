"""The seed's three loss terms and their weighted sum. Pure torch, no Ray."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossTerms:
    """The seed's three terms, each as the seed computes it: batch means, or one value per image."""

    cat: torch.Tensor
    """Cross-entropy of the class logits."""
    recon: torch.Tensor
    """Binary cross-entropy of the reconstruction logits against the image, mean over pixels."""
    kl: torch.Tensor
    """KL divergence of the posterior from N(0, I), summed over latents."""


@dataclass(frozen=True)
class LossWeights:
    """How the terms combine: `cat_weight * cat + recon + min(epoch * kl_step, kl_max) * kl` (the seed's
    schedule, without a cap)."""

    cat_weight: float = 0.1
    """Weight of the classification term."""
    kl_step: float = 0.001
    """KL weight added per epoch; epochs count from 1, so epoch 1 uses kl_step."""
    kl_max: float | None = None
    """Cap on the KL weight; None: none (the seed's weight grows without bound)."""

    def __post_init__(self):
        for name in ("cat_weight", "kl_step", "kl_max"):
            value = getattr(self, name)
            if name == "kl_max" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"LossWeights.{name} must be a number >= 0, got {value!r}")

    def kl_weight(self, epoch: int) -> float:
        weight = epoch * self.kl_step
        return weight if self.kl_max is None else min(weight, self.kl_max)


def kl_divergence(z_mean: torch.Tensor, log_z_var: torch.Tensor) -> torch.Tensor:
    """Per image: -0.5 * sum over latents of (1 + log var - mean^2 - var)."""
    return -0.5 * torch.sum(1 + log_z_var - z_mean.pow(2) - log_z_var.exp(), dim=1)


def loss_terms(
    x: torch.Tensor,
    y: torch.Tensor,
    x_recon_logits: torch.Tensor,
    z_mean: torch.Tensor,
    log_z_var: torch.Tensor,
    y_logits: torch.Tensor,
    per_image: bool = False,
) -> LossTerms:
    """The terms for images x in [0, 1], labels y, and the model's forward outputs: batch means
    (what training minimises), or with per_image=True one value per image (what evaluation sums)."""
    if not per_image:
        return LossTerms(
            cat=F.cross_entropy(y_logits, y),
            recon=F.binary_cross_entropy_with_logits(x_recon_logits, x),
            kl=kl_divergence(z_mean, log_z_var).mean(),
        )
    return LossTerms(
        cat=F.cross_entropy(y_logits, y, reduction="none"),
        recon=F.binary_cross_entropy_with_logits(x_recon_logits, x, reduction="none").flatten(1).mean(dim=1),
        kl=kl_divergence(z_mean, log_z_var),
    )


def total_loss(terms: LossTerms, weights: LossWeights, epoch: int) -> torch.Tensor:
    """The seed's objective at a 1-based epoch."""
    if epoch < 1:
        raise ValueError(f"epoch counts from 1, got {epoch}")
    return weights.cat_weight * terms.cat + terms.recon + weights.kl_weight(epoch) * terms.kl
