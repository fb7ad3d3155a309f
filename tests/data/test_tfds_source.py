"""TFDS (`bayesnas_jax.data.tfds_source`) through `tfds.testing.mock_data`, without
TensorFlow."""
import numpy as np
import pytest

from bayesnas_jax import data


def test_tfds_mock_data_source_without_tensorflow():
    """tfds.testing.mock_data works with tfds.data_source without TensorFlow."""
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        direct = tfds.data_source("mnist", split="test")
        expected = np.stack([np.asarray(direct[i]["image"]) for i in range(5)])
        expected_labels = [int(direct[i]["label"]) for i in range(5)]
        loaded = data.load_dataset(name="mnist", split="test")  # auto -> tfds
    assert loaded.source.startswith("tfds:mnist")
    assert loaded.images.shape == (5, 28, 28, 1) and loaded.images.dtype == np.uint8
    np.testing.assert_array_equal(loaded.images, expected)
    np.testing.assert_array_equal(loaded.labels, expected_labels)
    assert loaded.num_classes == 10
