"""Where the training loop's batches come from (`config.input.pipeline`).

* "memory": whole splits decoded into uint8 arrays (`data.load_splits`); batch
  (epoch, step) is a pure function of the seed, so a resumed run needs no input
  state. Crops and flips run on device. For CIFAR-sized data.
* "grain": records streamed by `data.streaming` — decoding, random-resized crop and
  flip in `config.input.workers` worker processes, each host reading its own shard —
  for datasets that do not fit in memory (ImageNet). The iterator's state goes into
  every checkpoint, so a resumed run sees the batches an uninterrupted one would.

Both give this host's rows of the global batch as arrays sharded over all devices.
"""
from __future__ import annotations

import jax
import numpy as np

from bayesnas_jax.data import load as data_load
from bayesnas_jax.data import streaming

PIPELINES = ("memory", "grain")


def host_batch(local, sharding):
  """This host's rows (already its own) → arrays sharded over all devices."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


class GrainFeed:
  """Streams the splits of `config.data` (an image folder or a prepared TFDS
  dataset) at `config.model.image_size`."""

  def __init__(self, config):
    spec = data_load.resolve_spec(dict(config.data))
    train_split, test_split = config.data.splits
    if spec["source"] == "image_folder" or (spec["source"] == "auto" and spec["path"]):
      self.train_source = streaming.image_folder_source(spec["path"], train_split)
      self.test_source = streaming.image_folder_source(
          spec["path"], test_split, tuple(self.train_source.class_names))
    elif spec["source"] in ("tfds", "auto"):
      self.train_source = streaming.tfds_source(spec["name"], train_split, spec["data_dir"])
      self.test_source = streaming.tfds_source(spec["name"], test_split, spec["data_dir"])
    else:
      raise ValueError(f"config.data.source: the grain pipeline reads 'image_folder' or "
                       f"'tfds', got {spec['source']!r}")
    hosts = jax.process_count()
    self.batch_size = config.input.batch_size
    if self.batch_size % hosts:
      raise ValueError(f"config.input.batch_size: {self.batch_size} must be a multiple of "
                       f"the {hosts} hosts")
    self.local_batch = self.batch_size // hosts
    self.image_size = config.model.image_size
    self.steps_per_epoch = (len(self.train_source) // hosts) // self.local_batch
    self.train_examples = len(self.train_source)
    self.test_examples = len(self.test_source)
    self.loader = streaming.make_loader(
        self.train_source, batch_size=self.local_batch, image_size=self.image_size,
        train=True, seed=config.seed, worker_count=config.input.get("workers", 0))
    self.iterator = iter(self.loader)

  def next_train(self, sharding):
    batch = next(self.iterator)
    return host_batch({"image": batch["image"], "label": batch["label"]}, sharding)

  def evaluate(self, eval_step, state, sharding):
    """{"loss", "accuracy", "examples"} over the whole test split; every host runs
    the same number of steps (a host out of records feeds masked padding)."""
    hosts = jax.process_count()
    loader = streaming.make_loader(self.test_source, batch_size=self.local_batch,
                                   image_size=self.image_size, train=False)
    largest_shard = -(-self.test_examples // hosts)
    steps = -(-largest_shard // self.local_batch)
    iterator = iter(loader)
    sums = None
    shape = (self.local_batch, self.image_size, self.image_size, 3)
    for _ in range(steps):
      batch = next(iterator, None)
      if batch is None:
        images, labels, valid = np.zeros(shape, np.uint8), np.zeros((self.local_batch,),
                                                                    np.int32), 0
      else:
        valid = len(batch["label"])
        images = np.concatenate([batch["image"],
                                 np.zeros((self.local_batch - valid,) + shape[1:], np.uint8)])
        labels = np.concatenate([batch["label"],
                                 np.zeros((self.local_batch - valid,), np.int32)])
      arrays = host_batch({"image": images, "label": labels,
                           "mask": np.arange(self.local_batch) < valid}, sharding)
      out = eval_step(state.params, state.batch_stats, arrays["image"], arrays["label"],
                      arrays["mask"])
      sums = out if sums is None else sums + out
    loss_sum, correct = (float(v) for v in jax.device_get(sums))
    n = self.test_examples
    return {"loss": loss_sum / n, "accuracy": correct / n, "examples": n}
