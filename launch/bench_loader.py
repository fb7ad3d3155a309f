"""Images per second of the grain input pipeline (`bayesnas_jax.data.streaming`).

  python -m launch.bench_loader --path=DIR --sizes=224,32 --workers=0,2 --batches=20

DIR is an image folder (DIR/train/<class>/*.jpg). Prints one JSON line per (size,
workers): decode + random-resized crop + flip + batching, measured after one
warm-up batch (worker start-up excluded).
"""
import json
import time

from absl import app
from absl import flags

from bayesnas_jax.data import streaming

FLAGS = flags.FLAGS
flags.DEFINE_string("path", None, "Image folder with a train split.")
flags.DEFINE_list("sizes", ["224", "32"], "Output image sizes.")
flags.DEFINE_list("workers", ["0", "2"], "grain worker counts.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("batches", 20, "Batches timed per setting.")
flags.mark_flag_as_required("path")


def main(argv):
  del argv
  source = streaming.image_folder_source(FLAGS.path, "train")
  for size in map(int, FLAGS.sizes):
    for workers in map(int, FLAGS.workers):
      loader = streaming.make_loader(source, batch_size=FLAGS.batch_size, image_size=size,
                                     train=True, seed=0, worker_count=workers,
                                     shard_index=0, shard_count=1)
      iterator = iter(loader)
      next(iterator)
      start = time.perf_counter()
      for _ in range(FLAGS.batches):
        next(iterator)
      seconds = time.perf_counter() - start
      print(json.dumps({"size": size, "workers": workers, "batch_size": FLAGS.batch_size,
                        "images_per_s": round(FLAGS.batches * FLAGS.batch_size / seconds, 1)}),
            flush=True)


if __name__ == "__main__":
  app.run(main)
