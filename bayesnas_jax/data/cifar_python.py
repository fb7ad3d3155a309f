"""CIFAR-10 "python version" source: pickled batches in ``cifar-10-batches-py/``.

Each of ``data_batch_1`` .. ``data_batch_5`` (train) and ``test_batch`` (test) is a
pickled dict with ``data``, uint8 ``[N, 3072]`` holding each image's red, green then
blue 32x32 plane, and ``labels``, a list of N ints; ``batches.meta`` has
``label_names``. Keys are ``bytes`` in the original (Python 2) pickles and ``str`` in
re-pickled ones; both are read.

Pickles can run code when loaded, so they are read with an unpickler that only builds
plain containers and numpy arrays.
"""
from __future__ import annotations

import os
import pickle

import numpy as np

from bayesnas_jax.data.dataset import DataNotFoundError, Dataset

DIRECTORY_NAME = "cifar-10-batches-py"
SPLIT_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck")

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles from Python 3 store bytes
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"CIFAR batch: refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: str) -> dict:
    """One pickled batch as a dict with ``str`` keys."""
    with open(path, "rb") as f:
        batch = _ArrayUnpickler(f, encoding="bytes").load()
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def resolve_directory(path: str) -> str:
    """``path`` itself if it holds the batches, else ``path/cifar-10-batches-py``."""
    nested = os.path.join(path, DIRECTORY_NAME)
    if not os.path.isfile(os.path.join(path, "test_batch")) and os.path.isdir(nested):
        return nested
    return path


def load_cifar10_python(path: str, split: str = "train") -> Dataset:
    """Decode the CIFAR-10 python batches of ``split`` into a ``Dataset``.

    Args:
      path: the ``cifar-10-batches-py`` directory or its parent.
      split: ``"train"`` (the five data batches, in order) or ``"test"``.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split: CIFAR-10 python batches have splits "
                         f"{sorted(SPLIT_FILES)}, got {split!r}")
    directory = resolve_directory(path)
    paths = [os.path.join(directory, name) for name in SPLIT_FILES[split]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataNotFoundError(
            "CIFAR-10 python batches",
            [f"cifar10_python: missing {', '.join(os.path.basename(p) for p in missing)}"
             f" in {directory}"])
    images, labels = [], []
    for batch_path in paths:
        batch = read_batch(batch_path)
        data = np.asarray(batch["data"], np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"CIFAR batch: data in {batch_path} has shape {data.shape}, "
                             "want [N, 3072]")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch["labels"], np.int32))
    class_names = CLASS_NAMES
    meta_path = os.path.join(directory, "batches.meta")
    if os.path.isfile(meta_path):
        names = read_batch(meta_path).get("label_names")
        if names:
            class_names = tuple(n.decode() if isinstance(n, bytes) else str(n)
                                for n in names)
    return Dataset(np.concatenate(images), np.concatenate(labels), class_names,
                   f"cifar10_python:{directory} ({split})")
