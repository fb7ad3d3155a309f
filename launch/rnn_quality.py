"""Recurrent search quality: searched cells against random cells of the same space.

  python -m launch.rnn_quality --config=configs/darts_ptb_search.py:cpu \
      --eval_config=configs/darts_ptb_eval.py:cpu --seeds=0,1,2 --random_cells=8 \
      --config.data.path=PTB_DIR --workdir=workdirs/rnn_quality

Searches once per seed (`DIR/<name>_seed<S>`, the search config; its own derived-cell
training is skipped), draws `--random_cells` genotypes uniformly (each node one
predecessor and one op, seeded by `--random_seed`), trains every searched and random
cell with the evaluation config (`DIR/train/<name>`, training seed 0) and writes
`DIR/quality_<name>.json`: each cell's validation and test perplexity, each searched cell's
percentile among the random ones (the share of random cells with a higher test
perplexity, ties counting half) and the means and sds. Relaunching skips what has
finished.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from bayesnas_jax import files, launcher

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Recurrent search config.", lock_config=True)
config_flags.DEFINE_config_file("eval_config", None, "Recurrent cell training config.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the searches, trainings and results.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Search seeds.")
flags.DEFINE_integer("random_cells", 8, "Cells drawn uniformly from the space.")
flags.DEFINE_integer("random_seed", 1000, "Seed of the random cells.")
flags.DEFINE_string("name", "search", "Prefix of the searches' folders: several search "
                    "configs can share one workdir and its random cells' trainings.")
flags.mark_flags_as_required(["config", "eval_config", "workdir"])


def random_genotypes(num_nodes, ops, count, seed):
  """`count` genotypes, each node j = 1..N one predecessor in 0..j−1 and one op."""
  rng = np.random.default_rng(seed)
  return [{"recurrent": [[str(ops[rng.integers(len(ops))]), int(rng.integers(j))]
                         for j in range(1, num_nodes + 1)],
           "concat": list(range(1, num_nodes + 1))} for _ in range(count)]


def percentile(value, others):
  """Share of `others` with a higher perplexity than `value` (ties half)."""
  others = np.asarray(others, float)
  return float(np.mean((others > value) + 0.5 * (others == value)))


def run(search_config, eval_config, workdir, seeds, random_cells, random_seed,
        name="search", log=launcher.log):
  from bayesnas_jax.lm import search as lm_search  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.lm import train as lm_train  # pylint: disable=import-outside-toplevel
  os.makedirs(workdir, exist_ok=True)
  cells = {}
  for seed in seeds:
    out = os.path.join(workdir, f"{name}_seed{seed}")
    if not os.path.exists(os.path.join(out, "summary.json")):
      config = search_config.copy_and_resolve_references()
      config.seed = seed
      config.train.steps = 0
      log(f"search seed {seed}")
      lm_search.run(config, out, log=log)
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
      summary = json.load(f)
    cells[f"{name}_seed{seed}"] = {
        "genotype": summary["genotype"], "decided_by_prior": summary["decided_by_prior"],
        "decided_by_rank": summary["decided_by_rank"], "path": os.path.join(out, "genotype.json")}
  for i, genotype in enumerate(random_genotypes(search_config.space.num_nodes,
                                                tuple(search_config.space.ops), random_cells,
                                                random_seed)):
    path = os.path.join(workdir, "random", f"cell{i}.json")
    if not os.path.exists(path):
      files.write_json(path, genotype)
    cells[f"random{i}"] = {"genotype": genotype, "path": path}
  for cell_name, cell in cells.items():
    out = os.path.join(workdir, "train", cell_name)
    if not os.path.exists(os.path.join(out, "summary.json")):
      config = eval_config.copy_and_resolve_references()
      config.train.genotype = cell["path"]
      log(f"training {cell_name}: {lm_search.genotype_literal(cell['genotype'])}")
      lm_train.train_cell(config, out, log=log)
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
      summary = json.load(f)
    cell.update(valid_perplexity=summary["valid_perplexity"],
                test_perplexity=summary["test_perplexity"])
  random = [c["test_perplexity"] for n, c in cells.items() if n.startswith("random")]
  searched = {n: c for n, c in cells.items() if not n.startswith("random")}
  for cell in searched.values():
    cell["percentile"] = percentile(cell["test_perplexity"], random)
  result = {
      "cells": cells,
      "searched_test_perplexity": {"mean": float(np.mean([c["test_perplexity"] for c in
                                                           searched.values()])),
                                   "sd": float(np.std([c["test_perplexity"] for c in
                                                       searched.values()], ddof=1))
                                   if len(searched) > 1 else 0.0},
      "random_test_perplexity": {"mean": float(np.mean(random)),
                                 "sd": float(np.std(random, ddof=1)) if len(random) > 1
                                 else 0.0},
      "mean_percentile": float(np.mean([c["percentile"] for c in searched.values()])),
  }
  files.write_json(os.path.join(workdir, f"quality_{name}.json"), result)
  for cell_name, cell in cells.items():
    log(f"{cell_name}: test perplexity {cell['test_perplexity']:.1f}"
        + (f", percentile {cell['percentile']:.2f}" if "percentile" in cell else ""))
  log(f"searched {result['searched_test_perplexity']['mean']:.1f} "
      f"(sd {result['searched_test_perplexity']['sd']:.1f}), random "
      f"{result['random_test_perplexity']['mean']:.1f} "
      f"(sd {result['random_test_perplexity']['sd']:.1f}); mean percentile "
      f"{result['mean_percentile']:.2f}")
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  seeds = launcher.int_list("seeds", FLAGS.seeds)
  sys.exit(launcher.run_guarded(
      lambda: run(FLAGS.config, FLAGS.eval_config, FLAGS.workdir, seeds, FLAGS.random_cells,
                  FLAGS.random_seed, FLAGS.name)))


if __name__ == "__main__":
  app.run(main, flags_parser=launcher.parse_flags)
