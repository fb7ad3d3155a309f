"""The grain input pipeline (`bayesnas_jax.data.streaming`) against a training step.

  python -m launch.bench_loader --path=DIR --sizes=224,32 --workers=0,2 \
      --genotype=workdirs/nb201/nb201_arch.txt

DIR is an image folder (DIR/train/<class>/*.jpg). For each image size, in one run:
the loader's images/s (decode + random-resized crop + flip + batching, after one
warm-up batch, so worker start-up is excluded) for each worker count, and the
images/s of one training step of the NB201 evaluation network of
configs/nb201_cifar10_eval.py with `--genotype` at that size (after compilation),
and their ratio. One JSON line per size.
"""
import json
import time

import jax
import numpy as np
from absl import app
from absl import flags

from bayesnas_jax.data import streaming
from bayesnas_jax.evaluation import train
from configs import nb201_cifar10_eval

FLAGS = flags.FLAGS
flags.DEFINE_string("path", None, "Image folder with a train split.")
flags.DEFINE_list("sizes", ["224", "32"], "Output image sizes.")
flags.DEFINE_list("workers", ["0", "2"], "grain worker counts.")
flags.DEFINE_integer("batch_size", 64, "Batch size of the loader and the step.")
flags.DEFINE_integer("batches", 10, "Batches (and steps) timed per setting.")
flags.DEFINE_string("genotype", None, "NB201 cell for the step (a file, e.g. a search's "
                    "nb201_arch.txt); without it only the loader is measured.")
flags.DEFINE_integer("channels", 16, "C of the NB201 network.")
flags.mark_flag_as_required("path")


def loader_rate(source, size, workers):
  loader = streaming.make_loader(source, batch_size=FLAGS.batch_size, image_size=size,
                                 train=True, seed=0, worker_count=workers, shard_index=0,
                                 shard_count=1)
  iterator = iter(loader)
  batch = next(iterator)
  start = time.perf_counter()
  for _ in range(FLAGS.batches):
    next(iterator)
  return FLAGS.batches * FLAGS.batch_size / (time.perf_counter() - start), batch


def step_rate(size, batch):
  config = nb201_cifar10_eval.get_config(FLAGS.genotype)
  config.model.image_size = size
  config.model.channels = FLAGS.channels
  config.input.batch_size = FLAGS.batch_size
  config.input.crop_padding = 0
  genotype = train.load_genotype(config)
  optimizer, train_step, _ = train.make_steps(config, genotype, 100)
  state = train.initial_state(config, genotype, jax.random.PRNGKey(0), optimizer)
  batch = {"image": batch["image"], "label": np.minimum(batch["label"], 9)}
  key = jax.random.PRNGKey(1)
  state, metrics = train_step(state, batch, key, np.float32(0))
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(FLAGS.batches):
    state, metrics = train_step(state, batch, key, np.float32(0))
  jax.block_until_ready(metrics)
  return FLAGS.batches * FLAGS.batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  source = streaming.image_folder_source(FLAGS.path, "train")
  device = jax.devices()[0]
  for size in map(int, FLAGS.sizes):
    row = {"size": size, "batch_size": FLAGS.batch_size,
           "device": f"{device.platform}:{device.device_kind}"}
    batch = None
    for workers in map(int, FLAGS.workers):
      rate, batch = loader_rate(source, size, workers)
      row[f"loader_images_per_s_workers{workers}"] = round(rate, 1)
    if FLAGS.genotype:
      row["step_images_per_s"] = round(step_rate(size, batch), 1)
      best = max(v for k, v in row.items() if k.startswith("loader_"))
      row["loader_over_step"] = round(best / row["step_images_per_s"], 2)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
