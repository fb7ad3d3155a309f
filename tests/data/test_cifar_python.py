"""CIFAR-10 python batches (`bayesnas_jax.data.cifar_python`): round trips with bytes or
str keys, and pickles that would run code refused."""
import os
import pickle

import numpy as np
import pytest

from bayesnas_jax import data
from bayesnas_jax.data import cifar_python


def _write_cifar_batches(directory, rng, per_batch=2, str_keys=False):
    os.makedirs(directory)
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {key("data"): rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 key("labels"): [int(v) for v in rng.integers(0, 10, per_batch)],
                 key("batch_label"): key("whatever")}
        with open(os.path.join(directory, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
        batches[name] = batch
    meta = {key("label_names"): [key(n) for n in cifar_python.CLASS_NAMES[::-1]]}
    with open(os.path.join(directory, "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return {n: {k.decode() if isinstance(k, bytes) else k: v for k, v in b.items()}
            for n, b in batches.items()}


@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar_python_round_trip(tmp_path, str_keys):
    batches = _write_cifar_batches(str(tmp_path / "cifar-10-batches-py"),
                                   np.random.default_rng(3), str_keys=str_keys)
    # The parent folder is accepted and auto picks this format.
    train = data.load_dataset(path=str(tmp_path), split="train")
    assert train.source.startswith("cifar10_python:")
    assert train.images.shape == (10, 32, 32, 3)
    first = batches["data_batch_1"]["data"][0]
    np.testing.assert_array_equal(train.images[0, :, :, 0], first[:1024].reshape(32, 32))
    np.testing.assert_array_equal(train.images[0, :, :, 2], first[2048:].reshape(32, 32))
    last = batches["data_batch_5"]
    np.testing.assert_array_equal(train.labels[-2:], last["labels"])
    assert train.class_names == cifar_python.CLASS_NAMES[::-1]  # read from batches.meta
    test = data.load_dataset(source="cifar10_python", path=str(tmp_path), split="test")
    np.testing.assert_array_equal(test.labels, batches["test_batch"]["labels"])


def test_cifar_python_refuses_code_in_pickles(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({"data": os.getcwd, "labels": []}, f)  # a global that is not numpy
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.load_cifar10_python(str(tmp_path), "test")
