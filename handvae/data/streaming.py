"""Which rows each training worker streams in an epoch, and in what order. Pure numpy and torch.

A data set folder is a list of units (row groups) in a fixed order (by file name relative to the
folder, then row group). Each epoch:

1. all ranks permute the units with the same generator (seed, epoch), lay them end to end, and
   rank r takes rows [r*P, (r+1)*P) of that sequence, P = rows // world (`epoch_slices`): every
   rank gets the same number of rows and so runs the same number of steps, every row is used once,
   and the rows dropped to keep the ranks equal are fewer than the workers (a unit may be cut
   between two ranks: each reads the part it needs);
2. each rank reads its slices in order (`handvae.data.folders.read_slices`) and shuffles them in windows
   of `window_rows` consecutive rows with its own generator (seed, epoch, rank) (`shuffled_batches`):
   memory is bounded by the window, and the order depends on neither block sizes nor timing.

The shuffle is global at the level of units and local within a window (MosaicML's streaming and
tf.data do the same); a data set of a few units, like the tests', is one window per rank and so a
full per-rank permutation. Test rows are split the same way without shuffling or dropping.
"""

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from handvae.rng import stream_generator

WINDOW_ROWS = 16_384
"""Rows a worker shuffles together: 13 MB of images, held twice while a window is shuffled. With
this and one read batch ahead (`handvae.data.folders.read_slices`) a worker's data memory is a few
tens of MB whatever the data set's size (benchmarks/streaming.py)."""


def epoch_slices(
    unit_rows: Sequence[int], world: int, rank: int, seed: int, epoch: int, shuffle: bool = True
) -> list[tuple[int, int, int]]:
    """Rank's (unit index, start, stop) row ranges for the epoch, in the order it reads them.

    shuffle=True (training): the units in the epoch's order, an equal share per rank (the remainder
    of rows // world dropped). shuffle=False (evaluation): the units in order, every row on some
    rank, shares differing by at most one row."""
    order = (
        torch.randperm(len(unit_rows), generator=stream_generator(seed, epoch)).tolist()
        if shuffle
        else range(len(unit_rows))
    )
    total = sum(unit_rows)
    if shuffle:
        share = total // world
        low, high = rank * share, (rank + 1) * share
    else:
        low, high = rank * total // world, (rank + 1) * total // world
    slices, position = [], 0
    for index in order:
        rows = unit_rows[index]
        start, stop = max(low - position, 0), min(high - position, rows)
        if start < stop:
            slices.append((index, start, stop))
        position += rows
        if position >= high:
            break
    return slices


def shuffled_batches(
    blocks: Iterable[tuple[np.ndarray, np.ndarray]],
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int,
    window_rows: int = WINDOW_ROWS,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Blocks of (images (n, 28, 28) uint8, labels (n,)) in read order -> batches of batch_size
    (the last may be smaller), shuffled within windows of window_rows consecutive rows."""
    generator = stream_generator(seed, epoch, rank)
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    pending_rows = 0
    carry = (np.empty((0, 28, 28), np.uint8), np.empty(0, np.uint8))
    for block in blocks:
        while len(block[1]):
            take = min(window_rows - pending_rows, len(block[1]))
            pending.append((block[0][:take], block[1][:take]))
            pending_rows += take
            block = (block[0][take:], block[1][take:])
            if pending_rows == window_rows:
                carry = yield from _emit_window(pending, carry, batch_size, generator)
                pending, pending_rows = [], 0
    if pending:
        carry = yield from _emit_window(pending, carry, batch_size, generator)
    if len(carry[1]):
        yield torch.from_numpy(carry[0]), torch.from_numpy(carry[1])


def _emit_window(window, carry, batch_size: int, generator: torch.Generator):
    """Yields the full batches of carry + the shuffled window; returns what is left over."""
    images = np.concatenate([block_images for block_images, _ in window])
    labels = np.concatenate([block_labels for _, block_labels in window])
    order = torch.randperm(len(labels), generator=generator).numpy()
    shuffled = np.empty((len(carry[1]) + len(labels), *images.shape[1:]), np.uint8)
    shuffled[: len(carry[1])] = carry[0]
    np.take(images, order, axis=0, out=shuffled[len(carry[1]) :])
    del images  # one window's copy at a time besides the shuffled one
    labels = np.concatenate([carry[1], labels[order]])
    full = len(labels) // batch_size * batch_size
    for start in range(0, full, batch_size):
        yield (
            torch.from_numpy(shuffled[start : start + batch_size]),
            torch.from_numpy(labels[start : start + batch_size]),
        )
    return shuffled[full:].copy(), labels[full:]


def in_order_batches(
    blocks: Iterable[tuple[np.ndarray, np.ndarray]], batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Blocks -> batches of batch_size in read order (evaluation), the last smaller, whatever the
    blocks' sizes. Batches of one size on purpose: cut per block (the test rows of one read batch, a few
    hundred to some 1,700), every other batch had a new size, the model's activations new sizes with it,
    and glibc's heap kept each size's freed chunks: a worker grew by 550 MB over the 100 test
    batches of a 1,032,480-character set, and stays flat with one size (docs/results/benchmarks.md)."""
    images, labels, rows = [], [], 0
    for block_images, block_labels in blocks:
        start = 0
        while start < len(block_labels):
            take = min(batch_size - rows, len(block_labels) - start)
            images.append(block_images[start : start + take])
            labels.append(block_labels[start : start + take])
            rows, start = rows + take, start + take
            if rows == batch_size:
                yield _batch(images, labels)
                images, labels, rows = [], [], 0
    if rows:
        yield _batch(images, labels)


def _batch(images: list[np.ndarray], labels: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch, copied out of the blocks (whose read-only buffers torch cannot take as they are)."""
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))
