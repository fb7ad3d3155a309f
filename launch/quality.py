"""Search quality: searched cells against cells drawn at random from the same space.

  python -m launch.quality --config=configs/nb201_cifar10_search.py:cpu --seeds=0,1,2 \
      --random_cells=20 --workdir=workdirs/quality_nb201 --config.data.path=DIR

Searches once per seed (`DIR/search_seed<S>`), draws `--random_cells` cells
uniformly from the space (seeded by `--random_seed`), trains every searched and
random cell with the one short protocol of `config.quality` (`DIR/train/*`) and
writes `DIR/quality.json` and `DIR/quality.png`: each searched cell's test
accuracy and its percentile among the random cells, the mean percentile, how
often the seeds agree on each edge, and the search seconds per seed. Every run
is resumable: relaunching skips what has finished. `--train_seeds=0,1,2` trains
every cell once per training seed and scores it by the mean (less protocol noise).

With a recurrent search config (`configs/darts_ptb_search.py`) the same command
benchmarks recurrent cells: every cell trained by the evaluation config its
`quality` section names, scored by test perplexity (docs/search_quality.md).

`--benchmark_table=CSV` scores the searched NB201 cells from a tabular benchmark
instead (NAS-Bench-201 / NATS-Bench accuracies, the user's file): per seed the
derived string, its accuracy and percentile among all cells, and the mean and
sd over seeds, in quality.json and quality.png; nothing is trained.
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from bayesnas_jax import launcher

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Search config (get_config) with a "
                                "`quality` section.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the searches, trainings and results.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Search seeds.")
flags.DEFINE_integer("random_cells", 20, "Cells drawn uniformly from the space.")
flags.DEFINE_integer("random_seed", 1000, "Seed of the random cells.")
flags.DEFINE_string("random_workdir", None, "Where the random cells and their trainings "
                    "live (default: --workdir). Benchmarks of several options with one "
                    "protocol can share one.")
flags.DEFINE_list("train_seeds", ["0"], "Training seeds of the short protocol: each cell "
                  "is trained once per seed and scored by its mean test accuracy.")
flags.DEFINE_string("benchmark_table", None, "CSV of NB201 cells and their accuracies "
                    "(columns `arch` and one accuracy column, or a NATS-Bench export with "
                    "--benchmark_column): score the searched cells from it, no training.")
flags.DEFINE_string("benchmark_column", None, "The accuracy column of --benchmark_table "
                    "(default: its one numeric column).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from bayesnas_jax.quality import benchmark as quality  # pylint: disable=import-outside-toplevel
  seeds = launcher.int_list("seeds", FLAGS.seeds)
  train_seeds = launcher.int_list("train_seeds", FLAGS.train_seeds)
  sys.exit(launcher.run_guarded(
      lambda: quality.run_quality(FLAGS.config, FLAGS.workdir, seeds, FLAGS.random_cells,
                                  FLAGS.random_seed, log=launcher.log,
                                  random_workdir=FLAGS.random_workdir,
                                  train_seeds=train_seeds,
                                  benchmark_table=FLAGS.benchmark_table,
                                  benchmark_column=FLAGS.benchmark_column)))


if __name__ == "__main__":
  app.run(main, flags_parser=launcher.parse_flags)
