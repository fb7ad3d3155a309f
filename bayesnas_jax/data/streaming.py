"""Streaming input with grain, for datasets that do not fit in memory (ImageNet).

The in-memory path (`load_splits`) decodes whole splits into one uint8 array; at
ImageNet scale that is 190 GB. Here records are read, decoded and augmented
batch by batch in grain worker processes:

    source = streaming.image_folder_source("DIR", "train")      # or tfds_source(...)
    loader = streaming.make_loader(source, batch_size=128, image_size=224,
                                   train=True, seed=0, worker_count=8)
    iterator = iter(loader)
    batch = next(iterator)          # {"image": uint8 [128, 224, 224, 3], "label": int32 [128]}
    state = iterator.get_state()    # bytes: save them with the model's checkpoint
    ...
    iterator = iter(loader); iterator.set_state(state)   # exactly the batches that followed

* Shuffling is seeded (a global permutation per epoch, grain's `IndexSampler`),
  and each record's augmentation draws from the generator grain seeds by the loader
  seed and the record's position in the stream, so a resumed run sees exactly the
  batches an uninterrupted one would. (Each worker batches its own records, so the
  batches depend on `worker_count`: resume with the one the state was saved with.)
* Each host reads only its shard (`shard_index` = `jax.process_index()`,
  `shard_count` = `jax.process_count()` by default), disjoint: in training equal
  shards (the remainder of an uneven split is dropped so hosts take equal steps),
  in evaluation every record once (shard sizes differ by at most one).
* Training: random-resized crop (scale 0.08–1, aspect 3/4–4/3, as Inception/DARTS
  ImageNet training) and a horizontal flip; evaluation: resize the shorter side to
  image_size / 0.875, then the central crop.
* `save_args` / `restore_args` put the iterator state in an orbax checkpoint
  (grain's own orbax handler).
"""
from __future__ import annotations

import math
import os
from typing import Any

import grain.python as grain
import numpy as np

from bayesnas_jax.data import image_folder

EVAL_CROP_FRACTION = 0.875


class ImageFolderSource(grain.RandomAccessDataSource):
  """`<root>/<split>/<class>/*.jpg|*.png` as records {"path", "label"}; decoding
  happens in the loader's workers."""

  def __init__(self, root: str, split: str = "train",
               class_names: tuple[str, ...] | None = None):
    self.paths, self.labels, self.class_names = image_folder.list_image_folder(
        root, split, class_names)

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    return {"path": self.paths[index], "label": int(self.labels[index])}

  def __repr__(self):
    return f"ImageFolderSource({len(self)} files)"


def image_folder_source(root: str, split: str = "train", class_names=None):
  return ImageFolderSource(os.path.expanduser(root), split, class_names)


def tfds_source(name: str, split: str, data_dir: str | None = None):
  """A prepared TFDS dataset (array_record) as a random-access source of
  {"image", "label"} records; reading needs no TensorFlow."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  return tfds.data_source(name, split=split, data_dir=data_dir or None)


class _Subset(grain.RandomAccessDataSource):
  """The records `indices` of `source`."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices, np.int64)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, index):
    return self.source[int(self.indices[index])]


def _pixels(record) -> np.ndarray:
  if "path" in record:
    _, pixels = image_folder._decode(record["path"])  # pylint: disable=protected-access
  else:
    pixels = np.asarray(record["image"])
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  if pixels.shape[-1] == 1:
    pixels = np.repeat(pixels, 3, -1)
  return pixels


def _resize(pixels: np.ndarray, box, size: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  image = Image.fromarray(pixels)
  return np.asarray(image.resize((size, size), Image.BILINEAR, box=box), np.uint8)


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """(left, top, right, bottom) of a crop with area fraction in `scale` and aspect
  ratio in `ratio` (log-uniform); the central square-ish crop after 10 misses."""
  area = height * width
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return (left, top, left + w, top + h)
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  return (left, top, left + side, top + side)


class TrainTransform(grain.RandomMapTransform):
  """Decode, random-resized crop to image_size², random flip. grain seeds `rng`
  from the sampler's seed and the record's position in the stream: resumable and
  independent of which worker runs it."""

  def __init__(self, image_size: int):
    self.image_size = image_size

  def random_map(self, record, rng: np.random.Generator):
    pixels = _pixels(record)
    box = random_resized_crop_box(pixels.shape[0], pixels.shape[1], rng)
    image = _resize(pixels, box, self.image_size)
    if rng.random() < 0.5:
      image = image[:, ::-1]
    return {"image": np.ascontiguousarray(image), "label": np.int32(record["label"])}


class EvalTransform(grain.MapTransform):
  """Decode, resize the shorter side to image_size/0.875, central image_size² crop."""

  def __init__(self, image_size: int):
    self.image_size = image_size

  def map(self, record):
    pixels = _pixels(record)
    height, width = pixels.shape[:2]
    side = min(height, width) * EVAL_CROP_FRACTION
    top, left = (height - side) / 2, (width - side) / 2
    image = _resize(pixels, (left, top, left + side, top + side), self.image_size)
    return {"image": image, "label": np.int32(record["label"])}


def make_loader(source, *, batch_size: int, image_size: int, train: bool, seed: int = 0,
                num_epochs: int | None = None, worker_count: int = 0,
                shard_index: int | None = None, shard_count: int | None = None,
                worker_buffer_size: int = 2) -> grain.DataLoader:
  """A grain loader of uint8 batches {"image": [B, S, S, 3], "label": [B]} from
  `source` (this host's shard; `batch_size` is per host). Training shuffles
  (seeded) and repeats forever unless `num_epochs` is given; evaluation reads its
  shard once, in order, keeping a last partial batch."""
  if batch_size <= 0 or image_size <= 0:
    raise ValueError(f"make_loader: batch_size and image_size must be > 0, got "
                     f"{batch_size} and {image_size}")
  if shard_index is None or shard_count is None:
    import jax  # pylint: disable=import-outside-toplevel
    shard_index, shard_count = jax.process_index(), jax.process_count()
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"make_loader: shard_index {shard_index} not in [0, {shard_count})")
  if len(source) < shard_count:
    raise ValueError(f"make_loader: {len(source)} records cannot be split over "
                     f"{shard_count} hosts")
  if train:  # equal shards, the remainder dropped: every host takes the same steps
    shard = grain.ShardOptions(shard_index, shard_count, drop_remainder=True)
  else:  # every record once: shard i takes records i, i + count, … (sizes differ by ≤ 1)
    source = _Subset(source, np.arange(shard_index, len(source), shard_count))
    shard = grain.NoSharding()
  if worker_count > 0:
    _absl_flags_parsed()
  epochs = num_epochs if num_epochs is not None else (None if train else 1)
  sampler = grain.IndexSampler(len(source), shard_options=shard, shuffle=train,
                               num_epochs=epochs, seed=seed)
  transform = TrainTransform(image_size) if train else EvalTransform(image_size)
  return grain.DataLoader(
      data_source=source, sampler=sampler,
      operations=[transform, grain.Batch(batch_size, drop_remainder=train)],
      worker_count=worker_count, worker_buffer_size=worker_buffer_size)


def _absl_flags_parsed():
  """grain's worker processes read absl flags; outside an absl app (a notebook,
  pytest) mark them parsed so the defaults apply."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def save_args(iterator) -> Any:
  """The orbax `args` item that saves a loader iterator's state (for
  `ocp.args.Composite(..., data=save_args(iterator))`)."""
  return grain.PyGrainCheckpointSave(iterator)


def restore_args(iterator) -> Any:
  """The orbax `args` item that restores a loader iterator's state in place."""
  return grain.PyGrainCheckpointRestore(iterator)
