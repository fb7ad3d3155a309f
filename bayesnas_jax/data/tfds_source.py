"""TFDS source: prepared ArrayRecord data read with ``tfds.data_source`` (no TensorFlow).

``tfds.data_source(name, split=..., data_dir=..., download=False)`` gives random access
to already-prepared records; each record is a dict whose ``image`` (uint8 ``[H, W, C]``)
and ``label`` are decoded here once into one array each. Preparing the data
(``tfds build``) needs TensorFlow and the internet, so it is never attempted: with
``download=True`` TFDS would try to fetch and hang on a machine without either.
Split strings may use TFDS slicing, e.g. ``"train[:10%]"``.
"""
from __future__ import annotations

import os

import numpy as np

from bayesnas_jax.data.dataset import DataNotFoundError, Dataset

HINT = ("To provide a TFDS dataset, prepare it in ArrayRecord format on a machine with "
        "TensorFlow and internet (`tfds build {name} --file_format=array_record "
        "--data_dir=DIR`) and point data.data_dir at DIR (or set TFDS_DATA_DIR).")


def default_data_dir() -> str:
    """Where TFDS looks when no data_dir is given."""
    return os.environ.get("TFDS_DATA_DIR",
                          os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def open_data_source(name: str, split: str, data_dir: str | None = None):
    """``tfds.data_source`` without downloading, mapping any failure to
    ``DataNotFoundError`` (TFDS raises several unrelated types for "not prepared")."""
    where = f"tfds: {name!r} split {split!r} in {data_dir or default_data_dir()}"
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataNotFoundError(f"TFDS dataset {name!r}",
                                [f"{where} -> {_first_line(error)}"]) from error
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as error:  # noqa: BLE001 -- TFDS has no common "missing" type
        raise DataNotFoundError(f"TFDS dataset {name!r}",
                                [f"{where} -> {_first_line(error)}"]) from error


def _class_names(source, label_key: str, labels: np.ndarray) -> tuple[str, ...]:
    try:
        names = source.dataset_info.features[label_key].names
    except (AttributeError, KeyError, TypeError):
        names = None
    if names:
        return tuple(names)
    return tuple(str(i) for i in range(int(labels.max(initial=-1)) + 1))


def load_tfds(name: str, split: str = "train", data_dir: str | None = None,
              image_key: str = "image", label_key: str = "label") -> Dataset:
    """Decode a prepared TFDS split into a ``Dataset``.

    Args:
      name: TFDS name, optionally with version/config (``"cifar10"``,
        ``"fashion_mnist:3.0.1"``).
      split: TFDS split string.
      data_dir: TFDS data directory; default TFDS's (``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      image_key, label_key: feature names of the image and the class label.
    """
    source = open_data_source(name, split, data_dir)
    count = len(source)
    if count == 0:
        raise DataNotFoundError(f"TFDS dataset {name!r}",
                                [f"tfds: {name!r} split {split!r} is empty"])
    first = source[0]
    for key in (image_key, label_key):
        if key not in first:
            raise ValueError(f"{key!r}: not a feature of TFDS {name!r} (features: "
                             f"{sorted(first)})")
    image = np.asarray(first[image_key])
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"image_key: {name!r}[{image_key!r}] is {image.dtype} "
                         f"{image.shape}, want uint8 [H, W, C]")
    image = image.reshape(*image.shape[:2], -1)
    images = np.empty((count, *image.shape), np.uint8)
    labels = np.empty((count,), np.int32)
    for i in range(count):
        record = first if i == 0 else source[i]
        pixels = np.asarray(record[image_key])
        if pixels.size != image.size:
            raise ValueError(f"image size: record {i} of TFDS {name!r} is "
                             f"{pixels.shape}, record 0 is {image.shape}")
        images[i] = pixels.reshape(image.shape)
        labels[i] = int(record[label_key])
    return Dataset(images, labels, _class_names(source, label_key, labels),
                   f"tfds:{name} ({split}) in {data_dir or default_data_dir()}")
