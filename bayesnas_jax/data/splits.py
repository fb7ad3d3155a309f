"""Seeded partition of a dataset's indices by fraction.

BayesNAS warms the supernet weights up on one part of the CIFAR-10 train set and runs the
architecture search on the rest (e.g. 10% / 90%); ``split_indices(n, (0.1, 0.9), seed)``
returns those two disjoint index sets. With ``p`` a permutation of ``0..n-1`` drawn from
``seed`` and cumulative fractions ``c_0 = 0, c_k = f_1 + ... + f_k``, part ``k`` holds
``p[round(c_{k-1} n) : round(c_k n)]``, so the parts are disjoint, their sizes add up
to ``round(c_K n)``, and fractions summing to one cover every index exactly once.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split_indices(n: int, fractions: Sequence[float], seed: int,
                  shuffle: bool = True) -> tuple[np.ndarray, ...]:
    """Disjoint int64 index arrays, part ``k`` holding about ``fractions[k] * n``.

    Args:
      n: number of examples.
      fractions: positive parts of the whole; their sum must not exceed 1.
      seed: the permutation's seed (the same seed always gives the same parts).
      shuffle: if False, the parts are consecutive ranges ``0..n-1`` in order.

    Each part is sorted, so a part's content does not depend on the permutation order.
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n: want a non-negative integer, got {n!r}")
    fractions = tuple(float(f) for f in fractions)
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise ValueError(f"fractions: want values in (0, 1], got {fractions}")
    cumulative = np.cumsum(fractions)
    if cumulative[-1] > 1.0 + 1e-9:
        raise ValueError(f"fractions: sum to {cumulative[-1]:.6g} > 1")
    order = (np.random.default_rng(seed).permutation(int(n)) if shuffle
             else np.arange(int(n)))
    bounds = np.concatenate([[0], np.rint(np.minimum(cumulative, 1.0) * n)]).astype(int)
    return tuple(np.sort(order[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:]))


def take_examples(dataset, count: int, seed: int = 0):
    """A fixed random subset of ``count`` examples (all if ``count`` is 0 or at least
    the dataset's size), drawn from ``seed`` independently of any run's seed, so
    that runs with different seeds see the same examples. Sorted by index."""
    if not count or count >= len(dataset):
        return dataset
    if int(count) != count or count < 0:
        raise ValueError(f"examples: want a non-negative integer, got {count!r}")
    order = np.random.default_rng(seed).permutation(len(dataset))[:int(count)]
    return dataset.subset(np.sort(order))
