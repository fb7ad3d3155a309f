"""Seeded splits by fraction (`bayesnas_jax.data.splits`)."""
import numpy as np
import pytest

from bayesnas_jax import data


def test_split_indices_seeded_disjoint_and_sized():
    warmup, search = data.split_indices(1000, (0.1, 0.9), seed=7)
    assert (len(warmup), len(search)) == (100, 900)
    np.testing.assert_array_equal(np.sort(np.concatenate([warmup, search])),
                                  np.arange(1000))
    again = data.split_indices(1000, (0.1, 0.9), seed=7)
    np.testing.assert_array_equal(again[0], warmup)
    other = data.split_indices(1000, (0.1, 0.9), seed=8)
    assert not np.array_equal(other[0], warmup)
    part, = data.split_indices(10, (0.5,), seed=0, shuffle=False)
    np.testing.assert_array_equal(part, np.arange(5))
    for bad in [(0.6, 0.6), (0.0, 0.5), (-0.1,), ()]:
        with pytest.raises(ValueError, match="fractions"):
            data.split_indices(10, bad, seed=0)
