"""Which style samples `handvae generate` draws, how often, and with which partners: pure numpy,
planned on the driver from the samples' keys and labels (16 bytes a sample)."""

import numpy as np

from handvae.errors import DataError
from handvae.generate.options import GenerateOptions
from handvae.labels import CHARSET
from handvae.rng import another_of_class, blend_uniforms, mix64

BLEND_SHARES = (0.3, 0.7)
"""How far a blend moves from its style sample's codes towards its partner's: uniformly in this range.
Nearer 0 it redraws the sample; at 0.5 it is most apart from both, with more ghosted strokes
(measured: docs/results/experiment-log.md, `mix-0.3:0.7` against `mix-0.5:0.5` and `mix-0.2:0.5`)."""
BLEND_CANDIDATES = 2
"""Blends drawn for each character, of which the model's classifier keeps the surest (`draw_blends`)."""


def own_class_draws(style_ids: np.ndarray, labels: np.ndarray, options: GenerateOptions, where: str) -> np.ndarray:
    """Draws of each style sample (0: unused) when each is drawn as its own class: for every
    character asked for, num_styles draws (all its samples once without num_styles), spread over
    its samples as evenly as can be, in an order set by the seed; times samples_per_style."""
    draws = np.zeros(len(labels), np.int64)
    for label in options.labels:
        samples = np.flatnonzero(labels == label)
        if not samples.size:
            raise DataError(
                f"{where} holds no samples of {CHARSET[label]!r} to take its styles from; leave it out of --chars, or use --pairing every-style"
            )
        if options.num_styles is None:
            draws[samples] = 1
            continue
        ranked = samples[np.argsort(mix64(style_ids[samples], options.seed), kind="stable")]
        rounds, rest = divmod(options.num_styles, len(samples))
        draws[ranked] = rounds
        draws[ranked[:rest]] += 1
    draws *= options.samples_per_style
    if draws.max(initial=0) > np.iinfo(np.int16).max:
        raise DataError(
            f"--num-styles {options.num_styles:,} x --samples-per-style {options.samples_per_style} would draw one sample {draws.max():,} times (at most {np.iinfo(np.int16).max:,}): {where} holds too few samples of some character"
        )
    return draws


def blend_draws(
    style_ids: np.ndarray, labels: np.ndarray, draws: np.ndarray, seed: int, candidates: int = BLEND_CANDIDATES
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The blends to draw (pairing "blend"), sample i's draws[i] of them in sample order: (the style
    sample's index (M,), its draw number (M,), partner indices (M, candidates), shares (M, candidates)).
    Each partner is uniformly one of the other drawn samples of the sample's class (the sample itself
    only where it is its class's only one), each share uniform in BLEND_SHARES; all from
    (seed, the sample's key, the draw number) (`handvae.rng.blend_uniforms`)."""
    drawn = np.flatnonzero(draws > 0)
    index = np.repeat(drawn, draws[drawn])
    starts = np.repeat(np.cumsum(draws[drawn]) - draws[drawn], draws[drawn])
    number = np.arange(len(index)) - starts
    uniforms = blend_uniforms(style_ids[index], number, seed, 2 * candidates)
    partners = np.empty((len(index), candidates), np.int64)
    for label in np.unique(labels[drawn]):
        members = drawn[labels[drawn] == label]  # in index order
        rows = np.flatnonzero(labels[index] == label)
        position = np.searchsorted(members, index[rows])[:, None]
        partners[rows] = members[another_of_class(position, len(members), uniforms[rows, :candidates])]
    low, high = BLEND_SHARES
    return index, number, partners, low + (high - low) * uniforms[:, candidates:]
