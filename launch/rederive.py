"""Derive a finished search again under other derivation options, without searching.

  python -m launch.rederive --config=configs/nb201_cifar10_search.py:cpu \
      --from_dir=DIR/search_seed0 --workdir=NEW/search_seed0 \
      --config.search.rank_by=curvature

Reads the last round of `--from_dir/architecture.json` (w, H, γ and the keep
flags of every scalar), ranks by `config.search.rank_by` and derives by the
space's rule (`config.search.derivation` for DARTS), and writes the space's
files (genotype.json, plots, …) and a summary.json to `--workdir`, which names
the search it came from. Only options that act after the last HARD update can
be studied this way (rank_by, derivation, top_k); pruning is the search's. A
`launch.quality` run pointed at the new searches' parent directory then
benchmarks the new cells (the searches count as done).
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from bayesnas_jax import launcher
from bayesnas_jax.search.rederive import rederive

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The search config (its space and the "
                                "derivation options to apply).", lock_config=True)
flags.DEFINE_string("from_dir", None, "Workdir of a finished search.")
flags.DEFINE_string("workdir", None, "Where to write the re-derived architecture.")
flags.mark_flags_as_required(["config", "from_dir", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  sys.exit(launcher.run_guarded(lambda: rederive(FLAGS.config, FLAGS.from_dir,
                                                 FLAGS.workdir)))


if __name__ == "__main__":
  app.run(main, flags_parser=launcher.parse_flags)
