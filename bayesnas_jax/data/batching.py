"""Epoch-seeded, resumable batches of host uint8 arrays.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, and batch
``s`` of that epoch is positions ``[s B, (s + 1) B)`` of it, so every batch is a pure
function of ``(seed, epoch, step)``: a run resumed at ``(epoch, step)`` sees exactly the
batches an uninterrupted run would have. Batches are cut from the in-memory arrays by
fancy indexing (a copy of ``B`` examples), which keeps the host far ahead of the device.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bayesnas_jax.data.dataset import Dataset


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Batches in one pass over ``n`` examples (``n // B``, or ``ceil(n / B)``)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size: want a positive integer, got {batch_size!r}")
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The visiting order of positions ``0..n-1`` in ``epoch`` (identity if not
    shuffled)."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed/epoch: want non-negative integers, got {seed}, {epoch}")
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def batch_indices(n: int, batch_size: int, *, seed: int, epoch: int, step: int,
                  shuffle: bool = True, drop_remainder: bool = True) -> np.ndarray:
    """Positions (into ``0..n-1``) of batch ``step`` of ``epoch``."""
    steps = steps_per_epoch(n, batch_size, drop_remainder)
    if not 0 <= step < steps:
        raise ValueError(f"step: want 0 <= step < {steps}, got {step}")
    order = epoch_order(n, seed, epoch, shuffle)
    return order[step * batch_size:(step + 1) * batch_size]


def _take(dataset: Dataset, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {"image": dataset.images[indices], "label": dataset.labels[indices]}


def iterate_batches(dataset: Dataset, batch_size: int, *, seed: int, epoch: int = 0,
                    start_step: int = 0, indices: np.ndarray | None = None,
                    shuffle: bool = True, drop_remainder: bool = True
                    ) -> Iterator[dict[str, np.ndarray]]:
    """Yield the batches of one epoch from ``start_step`` on.

    Args:
      dataset: the in-memory split.
      batch_size: examples per batch ``B``.
      seed, epoch: select the epoch's order (see module docstring).
      start_step: first batch to yield (resume point).
      indices: restrict to these examples (e.g. one part of ``split_indices``); the
        epoch order permutes positions in ``indices``.
      shuffle: if False, visit examples in ``indices`` order.
      drop_remainder: drop the last, smaller batch.

    Yields:
      ``{"image": uint8 [B, H, W, C], "label": int32 [B]}``.
    """
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    n = indices.shape[0]
    steps = steps_per_epoch(n, batch_size, drop_remainder)
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step: want 0 <= start_step <= {steps}, got {start_step}")
    order = indices[epoch_order(n, seed, epoch, shuffle)]
    for step in range(start_step, steps):
        yield _take(dataset, order[step * batch_size:(step + 1) * batch_size])


def stream_batches(dataset: Dataset, batch_size: int, *, seed: int, start_step: int = 0,
                   indices: np.ndarray | None = None, shuffle: bool = True,
                   drop_remainder: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Endless batches over successive epochs, starting at global step ``start_step``.

    Global step ``t`` is batch ``t mod S`` of epoch ``t div S``, with ``S`` the steps per
    epoch, so a checkpoint needs to store only ``t`` to resume the stream exactly.
    """
    n = len(dataset) if indices is None else len(indices)
    steps = steps_per_epoch(n, batch_size, drop_remainder)
    if steps == 0:
        raise ValueError(f"batch_size: {batch_size} leaves no full batch in {n} "
                         "examples")
    if start_step < 0:
        raise ValueError(f"start_step: want >= 0, got {start_step}")
    epoch, step = divmod(start_step, steps)
    while True:
        yield from iterate_batches(dataset, batch_size, seed=seed, epoch=epoch,
                                   start_step=step, indices=indices, shuffle=shuffle,
                                   drop_remainder=drop_remainder)
        epoch, step = epoch + 1, 0
