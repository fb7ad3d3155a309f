"""IDX files (`bayesnas_jax.data.idx`): round trips (gzip or not, both name styles),
files that are not IDX refused, and Fashion-MNIST from the Debian package when it
is installed."""
import gzip
import os

import numpy as np
import pytest

from bayesnas_jax import data
from bayesnas_jax.data import idx

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.mark.parametrize("gz, sep", [(True, "-"), (False, "."), (True, ".")])
def test_idx_round_trip(tmp_path, gz, sep):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 9, 1, 2], np.uint8)
    ext = ".gz" if gz else ""
    data.write_idx(str(tmp_path / f"t10k-images{sep}idx3-ubyte{ext}"), images)
    data.write_idx(str(tmp_path / f"t10k-labels{sep}idx1-ubyte{ext}"), labels)
    raw = (tmp_path / f"t10k-images{sep}idx3-ubyte{ext}").read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / f"t10k-images{sep}"
                                                     f"idx3-ubyte{ext}")), images)
    test = data.load_dataset(name="fashion_mnist", path=str(tmp_path), split="test")
    assert test.source.startswith("idx:")
    assert test.images.shape == (6, 28, 28, 1)
    np.testing.assert_array_equal(test.images[..., 0], images)
    np.testing.assert_array_equal(test.labels, labels)
    assert test.class_names == idx.CLASS_NAMES["fashion_mnist"]


def test_idx_rejects_non_idx_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04junk")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(gzip.compress(b"\0\0\x08\x01"))
    with pytest.raises(ValueError, match="IDX"):
        data.load_idx(str(tmp_path), "train")


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package():
    test = data.load_dataset(name="fashion_mnist", source="idx", split="test")
    assert test.images.shape == (10000, 28, 28, 1)
    assert test.class_names[9] == "Ankle boot"
    np.testing.assert_array_equal(test.class_counts(), np.full(10, 1000))
