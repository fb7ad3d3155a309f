"""`bayesnas_jax.data.Dataset` (`data/dataset.py`) validates its arrays."""
import numpy as np
import pytest

from bayesnas_jax import data


def test_dataset_validates_arrays():
    with pytest.raises(ValueError, match="images"):
        data.Dataset(np.zeros((2, 3, 3, 1), np.float32), np.zeros(2), ("a",))
    with pytest.raises(ValueError, match="labels"):
        data.Dataset(np.zeros((2, 3, 3, 1), np.uint8), np.array([0, 1]), ("a",))
