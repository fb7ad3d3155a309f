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

import json
import os
import sys

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from bayesnas_jax import files, launcher, prior, spaces
from bayesnas_jax.search import hard

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The search config (its space and the "
                                "derivation options to apply).", lock_config=True)
flags.DEFINE_string("from_dir", None, "Workdir of a finished search.")
flags.DEFINE_string("workdir", None, "Where to write the re-derived architecture.")
flags.mark_flags_as_required(["config", "from_dir", "workdir"])


def prior_state_from_records(path, space, grouping):
  """The last round in architecture.json as (prior state, records): per group
  γ, ω and keep flags in a `HardState` (no rank score yet), and per member the
  recorded w, H and H_se, {name: {kind: {"origin", "ops"}}}."""
  try:
    with open(path, encoding="utf-8") as f:
      rounds = json.load(f)["rounds"]
  except (OSError, ValueError, KeyError) as err:
    raise ValueError(f"{path}: expected a search's architecture.json ({err})") from None
  if not rounds:
    raise ValueError(f"{path}: no round was recorded")
  scalars = rounds[-1]["scalars"]
  members = {"w": {}, "H": {}, "H_se": {}}
  groups = {"gamma": {}, "omega": {}, "keep": {}}
  for kind, spec in space.cells.items():
    mine = [s for s in scalars if s["cell_type"] == kind]
    cells = 1 + max(s["cell"] for s in mine)
    arrays = {name: {"origin": np.zeros((cells, spec.num_edges)),
                     "ops": np.zeros((cells, spec.num_edges, len(spec.ops)))}
              for name in ("w", "H", "H_se", "gamma", "omega", "kept")}
    index = {edge: e for e, edge in enumerate(spec.edges)}
    for s in mine:
      e = index[(s["from"], s["to"])]
      part, at = (("origin", (s["cell"], e)) if s["op"] == "origin"
                  else ("ops", (s["cell"], e, spec.ops.index(s["op"]))))
      for name in arrays:
        arrays[name][part][at] = float(s.get(name, 0.0))
    for name in members:
      members[name][kind] = arrays[name]
    group = (lambda a: a[0]) if grouping == "cell_type" else (lambda a: a)
    for name, record in (("gamma", "gamma"), ("omega", "omega"), ("keep", "kept")):
      groups[name][kind] = {p: group(arrays[record][p]) for p in ("origin", "ops")}
    groups["keep"][kind] = {p: v.astype(bool) for p, v in groups["keep"][kind].items()}
  state = prior.HardState(rounds=np.asarray(len(rounds)), **groups)
  return state, members


def rederive(config, from_dir, workdir):
  space = spaces.make(config.space)
  search = config.search
  state, members = prior_state_from_records(os.path.join(from_dir, "architecture.json"),
                                            space, search.grouping)
  w, curvature, curvature_se = members["w"], members["H"], members["H_se"]
  state = state.replace(
      score={kind: {p: np.asarray(hard.rank_score(search.rank_by, w[kind][p], curvature[kind][p],
                                                  state.gamma[kind][p], search.grouping))
                    for p in ("origin", "ops")} for kind in space.cells},
      score_se={kind: {p: np.asarray(hard.score_noise(search.rank_by, w[kind][p],
                                                      curvature_se[kind][p], search.grouping))
                       for p in ("origin", "ops")} for kind in space.cells})
  architecture = space.derive(state, search)
  os.makedirs(workdir, exist_ok=True)
  fields = space.export(workdir, architecture, state, search)
  with open(os.path.join(from_dir, "summary.json"), encoding="utf-8") as f:
    original = json.load(f)
  summary = {**fields, "rederived_from": os.path.abspath(from_dir),
             "rank_by": search.rank_by, "derivation": search.get("derivation", "pairs"),
             "search_seconds": original.get("search_seconds"),
             "derived_params": space.parameter_count(architecture),
             "genotype": architecture}
  files.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  sys.exit(launcher.run_guarded(lambda: rederive(FLAGS.config, FLAGS.from_dir,
                                                 FLAGS.workdir)))


if __name__ == "__main__":
  app.run(main, flags_parser=launcher.parse_flags)
