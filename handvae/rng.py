"""Every seed derivation in handvae: how one user seed becomes each stream of random numbers.

The scheme: a run's randomness is a function of the user's seed and of *where* the numbers are
used (the epoch, the rank, a record's key), never of timing, batching or how many workers read the
data. Each use below names its keys:

| use                                   | function                 | keys                              |
|---------------------------------------|--------------------------|-----------------------------------|
| initial weights, report reconstructions| `seed_global`           | seed                              |
| training noise and augmentation       | `seed_training_step`     | seed, epoch, rank                 |
| the epoch's order of training images  | `epoch_generator`        | seed, epoch                       |
| pair training's partners              | `partner_uniforms`       | seed, epoch, a stream tag         |
| streamed units and shuffle windows    | `stream_generator`       | seed, epoch (, rank, window)      |
| letters' train/test split, style picks| `mix64`                  | seed, a record's row or key       |
| a record's posterior noise            | `seeded_normal`          | seed, the record's key (, stream) |
| a blend's partners and shares         | `blend_uniforms`         | seed, the sample's key, the draw  |
| the judge and the reference classifier| `judge_generator`        | seed                              |

The formulas differ by use because each was fixed when its use was introduced and every published
figure (docs/results/) depends on them: changing one changes models and data sets bit for bit.
Keeping them here, each with its keys, is what makes a new use pick fresh keys instead of
colliding with an old stream. Pure numpy and torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: the readers import mix64 and need no torch (seconds)
    import torch

_SPLITMIX_GAMMA = 0x9E3779B97F4A7C15


def seed_global(seed: int) -> None:
    """Seeds torch's global generator: before the model is built (every rank builds the same
    weights), and before the evaluation report's reconstructions (their posterior samples)."""
    import torch

    torch.manual_seed(seed)


def seed_training_step(seed: int, epoch: int, rank: int) -> None:
    """Seeds torch's global generator for one rank's epoch (sampling noise, augmentation, teacher
    forcing): a function of (seed, epoch, rank), so a resumed run continues exactly."""
    import torch

    torch.manual_seed(((seed * 1_000_003 + epoch) * 10_007 + rank) % 2**64)  # torch takes 64 bits; seeds < 2**32 fit


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of an epoch's order of training images, the same on every rank."""
    import torch

    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


_PARTNER_STREAM = 0x9A17
"""Tags the partners' stream apart from every other use of (seed, epoch)."""


def partner_uniforms(seed: int, epoch: int, count: int) -> torch.Tensor:
    """(count,) float64 uniforms in [0, 1), one per training image in its stable order, from which
    pair training picks each image's partner (`handvae.model.steps.epoch_partners`): a function of
    (seed, epoch), the same on every rank and after a resume."""
    import torch

    return torch.from_numpy(np.random.default_rng([seed, epoch, _PARTNER_STREAM]).random(count))


def another_of_class(position: np.ndarray, class_size: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """The position within its class of another member, chosen uniformly by `uniforms` in [0, 1)
    (broadcast against `position`): an offset of 1..size-1 along the class, so never the member at
    `position` itself, except in a class of one. Pair training's partners and the blends' partners."""
    offset = 1 + np.floor(uniforms * (class_size - 1)).astype(np.int64)
    return (position + offset) % class_size


def stream_generator(*keys: int) -> torch.Generator:
    """A generator for any tuple of non-negative keys, through numpy's SeedSequence (keys of any
    size mix well): the streaming feed's unit order (seed, epoch) and windows (seed, epoch, rank, ...)."""
    import torch

    return torch.Generator().manual_seed(
        int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))
    )


def judge_generator(seed: int) -> torch.Generator:
    """The judge's (and the reference classifier's) order and augmentation; also seeds torch's
    global generator, which its dropout draws from."""
    import torch

    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def mix64(values: np.ndarray, seed: int) -> np.ndarray:
    """An independent-looking uint64 for each (seed, value): the splitmix64 finaliser, so that
    consecutive values do not get related hashes."""
    # The seed's term in Python integers, wrapped to 64 bits by hand: numpy warns when a *scalar*
    # uint64 product overflows (seed >= 2 here), though wrapping is what the hash wants. The array
    # operations below wrap silently.
    x = values.astype(np.uint64) + np.uint64((seed & 0xFFFFFFFF) * _SPLITMIX_GAMMA & 0xFFFFFFFFFFFFFFFF)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_BLEND_STREAM = 0xB1E4D


def blend_uniforms(style_ids: np.ndarray, draws: np.ndarray, seed: int, count: int) -> np.ndarray:
    """(N, count) uniforms in [0, 1) for draw draws[i] of the blend of style sample style_ids[i]
    (`handvae.generate.choices.blend_draws`: which partners, what shares): a function of (seed, the
    sample's key, the draw) alone, whichever other samples are drawn."""
    draw_keys = mix64(np.asarray(draws, np.int64), _BLEND_STREAM)
    base = mix64(np.asarray(style_ids, np.int64).astype(np.uint64) ^ draw_keys, seed)
    columns = [mix64(base + np.uint64(j), seed) for j in range(count)]
    return (np.stack(columns, axis=1) >> np.uint64(11)).astype(np.float64) / 2.0**53  # 53 random bits each


def seeded_normal(keys: Sequence[Sequence[int]], size: int) -> torch.Tensor:
    """(len(keys), size) standard normal noise, row i drawn from its own seed keys[i] (a tuple of
    non-negative ints): a row's noise does not depend on which rows share its batch or worker."""
    import torch

    rows = [np.random.default_rng(list(key)).standard_normal(size, dtype=np.float32) for key in keys]
    return torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, size)
