"""Deriving a finished search again under other derivation options, without searching
(`launch.rederive`).

Reads the last round of `<from_dir>/architecture.json` (w, H, γ and the keep flags of
every scalar), ranks by `config.search.rank_by` and derives by the space's rule, and
writes the space's files and a summary.json that names the search it came from. Only
options that act after the last HARD update can be studied this way (rank_by,
derivation, top_k); pruning is the search's.
"""
from __future__ import annotations

import json
import os

import numpy as np

from bayesnas_jax import files, prior, spaces
from bayesnas_jax.search import hard


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
  grouping = search.get("grouping", "cell_type")  # the recurrent search groups by cell type
  state, members = prior_state_from_records(os.path.join(from_dir, "architecture.json"),
                                            space, grouping)
  w, curvature, curvature_se = members["w"], members["H"], members["H_se"]
  state = state.replace(
      score={kind: {p: np.asarray(hard.rank_score(search.rank_by, w[kind][p], curvature[kind][p],
                                                  state.gamma[kind][p], grouping))
                    for p in ("origin", "ops")} for kind in space.cells},
      score_se={kind: {p: np.asarray(hard.score_noise(search.rank_by, w[kind][p],
                                                      curvature_se[kind][p], grouping))
                       for p in ("origin", "ops")} for kind in space.cells})
  architecture = space.derive(state, search)
  os.makedirs(workdir, exist_ok=True)
  fields = space.export(workdir, architecture, state, search)
  with open(os.path.join(from_dir, "summary.json"), encoding="utf-8") as f:
    original = json.load(f)
  summary = {**fields, "rederived_from": os.path.abspath(from_dir),
             "rank_by": search.rank_by, "derivation": search.get("derivation", "pairs"),
             "search_seconds": original.get("search_seconds", original.get("seconds")),
             "derived_params": space.parameter_count(architecture),
             "genotype": architecture}
  files.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary
