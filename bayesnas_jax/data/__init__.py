"""Data: decode once to uint8 host arrays, batch by index, augment on device.

- ``load_dataset`` / ``load_splits`` (``load.py``): one entry point over TFDS, image
  folders, IDX files and CIFAR-10 python batches, with an optional ``.npz`` cache.
- ``split_indices`` (``splits.py``): seeded partition by fraction (warm-up / search).
- ``iterate_batches`` / ``stream_batches`` (``batching.py``): batches that are a pure
  function of ``(seed, epoch, step)``, so resumed runs see the same data.
- ``augment_batch`` / ``preprocess`` (``augment.py``): jittable crop, flip, cutout and
  normalisation.
- ``quickstart_path`` (``quickstart.py``): a small CIFAR-10 subset in the package.
- ``text`` (``text.py``): word-level corpora (PTB, WikiText-2) as token streams,
  contiguous batches and AWD-LSTM's random-length BPTT windows.
"""
from bayesnas_jax.data.augment import (CIFAR10_MEAN, CIFAR10_STD, augment_batch, cutout,
                                       normalize, preprocess, random_crop, random_flip,
                                       to_float)
from bayesnas_jax.data.batching import (batch_indices, epoch_order, iterate_batches,
                                        steps_per_epoch, stream_batches)
from bayesnas_jax.data.cifar_python import load_cifar10_python
from bayesnas_jax.data.dataset import DataNotFoundError, Dataset
from bayesnas_jax.data.idx import load_idx, read_idx, write_idx
from bayesnas_jax.data.image_folder import load_image_folder
from bayesnas_jax.data.load import load_dataset, load_splits, resolve_spec
from bayesnas_jax.data.quickstart import load_quickstart, quickstart_path
from bayesnas_jax.data.splits import split_indices, take_examples
from bayesnas_jax.data import text
from bayesnas_jax.data.tfds_source import load_tfds

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "DataNotFoundError", "Dataset", "augment_batch",
    "batch_indices", "cutout", "epoch_order", "iterate_batches", "load_cifar10_python",
    "load_dataset", "load_idx", "load_image_folder", "load_quickstart", "load_splits",
    "load_tfds", "normalize", "preprocess", "quickstart_path", "random_crop",
    "random_flip", "read_idx", "resolve_spec", "split_indices", "steps_per_epoch", "text",
    "stream_batches", "take_examples", "to_float", "write_idx",
]
