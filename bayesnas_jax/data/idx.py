"""IDX source (MNIST, Fashion-MNIST): ``train-images-idx3-ubyte[.gz]`` and friends.

An IDX file is two zero bytes, a type byte (``0x08`` = uint8), a byte giving the number
of dimensions ``d``, ``d`` big-endian int32 sizes, then the values in C order. Images are
``[N, H, W]`` (returned as ``[N, H, W, 1]``), labels ``[N]``. The ``test`` split is the
``t10k-*`` pair. Files may be gzip-compressed (``.gz``) or raw, and the separator before
``idx3`` may be ``-`` or ``.`` (both spellings are in circulation).
"""
from __future__ import annotations

import gzip
import os

import numpy as np

from bayesnas_jax.data.dataset import DataNotFoundError, Dataset

SPLIT_PREFIXES = {"train": "train", "test": "t10k", "t10k": "t10k"}

CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"),
}

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
           0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (gzip-compressed when it starts with the gzip magic)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _DTYPES:
        raise ValueError(f"IDX file: {path} has no IDX header (got {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int(s) for s in np.frombuffer(data, ">i4", ndim, offset=4))
    dtype = np.dtype(_DTYPES[data[2]])
    count = int(np.prod(shape))
    offset = 4 + 4 * ndim
    if len(data) - offset < count * dtype.itemsize:
        raise ValueError(f"IDX file: {path} is truncated (header says {shape})")
    return np.frombuffer(data, dtype, count, offset=offset).reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file, gzip-compressed when ``path`` ends in .gz."""
    array = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    data = header + array.tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def idx_candidates(directory: str, split: str, kind: str) -> list[str]:
    """Paths where the ``kind`` ("images" or "labels") file of ``split`` may be."""
    prefix = SPLIT_PREFIXES[split]
    rank = "idx3" if kind == "images" else "idx1"
    return [os.path.join(directory, f"{prefix}-{kind}{sep}{rank}-ubyte{ext}")
            for sep in ("-", ".") for ext in (".gz", "")]


def find_idx_pair(directory: str, split: str) -> tuple[str, str]:
    """The (images, labels) files of ``split`` in ``directory``.

    Raises:
      ValueError: ``split`` is not train/test.
      DataNotFoundError: one of the two files is missing.
    """
    if split not in SPLIT_PREFIXES:
        raise ValueError(f"split: IDX data has splits {sorted(SPLIT_PREFIXES)}, got "
                         f"{split!r}")
    found, tried = [], []
    for kind in ("images", "labels"):
        candidates = idx_candidates(directory, split, kind)
        hit = next((p for p in candidates if os.path.isfile(p)), None)
        if hit is None:
            tried.append(f"idx: no {os.path.basename(candidates[0])} (or unzipped / "
                         f"'.idx' spelling) in {directory}")
        found.append(hit)
    if tried:
        raise DataNotFoundError("IDX files", tried)
    return found[0], found[1]


def load_idx(directory: str, split: str = "train",
             class_names: tuple[str, ...] | None = None) -> Dataset:
    """Decode the IDX pair of ``split`` in ``directory`` into a ``Dataset``.

    Args:
      directory: folder holding e.g. ``train-images-idx3-ubyte.gz``.
      split: ``"train"`` or ``"test"``.
      class_names: label names; default ``"0"``..``"<max label>"``.
    """
    images_path, labels_path = find_idx_pair(directory, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"IDX images: want uint8 [N, H, W], got {images.dtype} "
                         f"{images.shape} in {images_path}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"IDX labels: want [{images.shape[0]}], got {labels.shape} in "
                         f"{labels_path}")
    if images.ndim == 3:
        images = images[..., None]
    labels = labels.astype(np.int32)
    if class_names is None:
        class_names = tuple(str(i) for i in range(int(labels.max(initial=-1)) + 1))
    return Dataset(images, labels, class_names,
                   f"idx:{directory} ({split})")
