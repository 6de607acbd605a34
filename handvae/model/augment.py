"""Random affine augmentation of training batches: small shifts, rotations and scalings, drawn per
image from torch's global RNG (which the training loop seeds per epoch and rank). Pure torch."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from handvae.errors import require


@dataclass(frozen=True)
class Augment:
    """Ranges of the random affine map applied to each training image; all zero: off (the seed)."""

    max_shift: float = 0.0
    """Largest shift, in pixels, along each axis."""
    max_rotation: float = 0.0
    """Largest rotation, in degrees, either way."""
    max_scale: float = 0.0
    """Largest relative change of size, either way (0.1: 90%-110%)."""

    def __post_init__(self):
        for name, top in (("max_shift", 8.0), ("max_rotation", 45.0), ("max_scale", 0.5)):
            require(
                "Augment.",
                name,
                getattr(self, name),
                (int, float),
                lambda v, top=top: 0.0 <= v <= top,
                f"a number in [0, {top}]",
            )

    @property
    def active(self) -> bool:
        return bool(self.max_shift or self.max_rotation or self.max_scale)


def augment(x: torch.Tensor, config: Augment) -> torch.Tensor:
    """Images (B, 1, S, S) in [0, 1] -> the same images, each moved by its own random affine map
    (bilinear, zeros outside)."""
    if not config.active:
        return x
    n, side = len(x), x.shape[-1]
    uniform = lambda: torch.rand(n, device=x.device) * 2 - 1  # noqa: E731 - one draw in [-1, 1] per image
    angle = uniform() * math.radians(config.max_rotation)
    scale = 1 + uniform() * config.max_scale
    shift = torch.stack([uniform(), uniform()], dim=1) * (2 * config.max_shift / side)  # pixels -> [-1, 1] grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
