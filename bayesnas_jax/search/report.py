"""What a search leaves in its workdir: per-round records, the derived genotype,
architecture.json, cell plots and summary.json. Every number is computed."""
from __future__ import annotations

import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import export
from bayesnas_jax.spaces import darts

SEARCH_PHASES = ("warmup", "train", "curvature", "update")


def _round_path(workdir, round_):
  return os.path.join(workdir, "rounds", f"round_{round_:03d}.json")


def write_round(workdir, round_, spec, records, clamped):
  """Writes one round's per-scalar records (w, H, C, ω, s, γ, kept)."""
  os.makedirs(os.path.join(workdir, "rounds"), exist_ok=True)
  scalars = []
  for kind, parts in records.items():
    scalars.extend(export.architecture_records(round_, kind, spec, parts))
  export.write_json(_round_path(workdir, round_),
                    {"round": round_, "clamped_curvature": clamped, "scalars": scalars})


def _group_values(array, grouping):
  array = np.asarray(array)
  return array.mean(axis=0) if grouping == "none" else array


def derive_genotype(config, spec, prior_state):
  """The discrete cells: prune by γ, then the top-k (edge, op) per node."""
  cells = {}
  for kind in darts.CELL_TYPES:
    if kind not in prior_state["gamma"]:
      cells[kind] = {"edges": [], "concat": []}
      continue
    grouping = config.search.grouping
    gamma = _group_values(prior_state["gamma"][kind]["ops"], grouping)
    keep = np.asarray(prior_state["keep"][kind]["ops"])
    keep = keep.any(axis=0) if grouping == "none" else keep
    cells[kind] = export.derive_cell(gamma, keep, spec, k=config.search.top_k)
  return export.genotype_from_cells(cells["normal"], cells["reduce"])


def genotype_masks(genotype, spec, arch):
  """0/1 masks of the architecture scalars that switch on exactly the genotype's
  (edge, op) pairs (and their origins) in every cell of each type."""
  edge_index = {edge: i for i, edge in enumerate(spec.edges)}
  masks = {}
  for kind in arch:
    ops = np.zeros(arch[kind]["ops"].shape[1:], np.float32)
    for op, source, target in genotype[kind]:
      ops[edge_index[(source, target)], spec.ops.index(op)] = 1.0
    n = arch[kind]["ops"].shape[0]
    masks[kind] = {"ops": jnp.broadcast_to(jnp.asarray(ops), (n,) + ops.shape),
                   "origin": jnp.broadcast_to(jnp.asarray(ops.any(-1), jnp.float32),
                                              (n, ops.shape[0]))}
  return masks


def derived_parameter_count(config, genotype, in_channels=3):
  """Parameters of the derived network at search size (stem, preprocessing, the
  genotype's ops in every cell, classifier); BN without affine has none."""
  spec = darts.cell_spec(config.space)
  shapes = darts.weight_shapes(config.space, in_channels)
  plan, _ = darts.cell_plan(config.space)

  def size(tree):
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))

  total = size(shapes["stem"]) + size(shapes["classifier"])
  for cell, (kind, _, _, _) in zip(shapes["cells"], plan):
    total += size(cell["pre0"]) + size(cell["pre1"])
    for op, source, target in genotype[kind]:
      edges = spec.out_edges(source)
      stacked = cell["edges"][f"from_{source}"][op]
      total += size(stacked) // len(edges)
  return total


def write_search_outputs(config, workdir, spec, state, position):
  """genotype.json (+ DARTS literal), architecture.json, plots."""
  prior_state = jax.device_get(state["prior"])
  genotype = derive_genotype(config, spec, prior_state)
  export.write_genotype(workdir, genotype)
  rounds = []
  for path in sorted(glob.glob(os.path.join(workdir, "rounds", "round_*.json"))):
    with open(path, encoding="utf-8") as f:
      rounds.append(json.load(f))
  export.write_json(os.path.join(workdir, "architecture.json"),
                    {"ops": list(spec.ops), "edges": [list(e) for e in spec.edges],
                     "prune_threshold": config.search.prune_threshold,
                     "grouping": config.search.grouping, "rounds": rounds})
  plots = os.path.join(workdir, "plots")
  os.makedirs(plots, exist_ok=True)
  for kind in darts.CELL_TYPES:
    if kind not in prior_state["gamma"]:
      continue
    cell = {"edges": genotype[kind], "concat": genotype[f"{kind}_concat"]}
    export.plot_cell(cell, os.path.join(plots, f"{kind}_cell"), f"BayesNAS {kind} cell")
    grouping = config.search.grouping
    keep = np.asarray(prior_state["keep"][kind]["ops"])
    export.plot_gamma(_group_values(prior_state["gamma"][kind]["ops"], grouping),
                      keep.any(axis=0) if grouping == "none" else keep, spec,
                      os.path.join(plots, f"{kind}_gamma"), f"{kind} cell: prior variance γ")
  position["kept"] = {
      kind: {"ops": int(np.sum(np.asarray(prior_state["keep"][kind]["ops"]))),
             "origins": int(np.sum(np.asarray(prior_state["keep"][kind]["origin"])))}
      for kind in prior_state["keep"]}
  position["derived_params"] = derived_parameter_count(config, genotype)


def finish(config, workdir, position):
  """summary.json from the run's bookkeeping."""
  elapsed = position.get("elapsed", {})
  device = jax.devices()[0]
  with open(os.path.join(workdir, "genotype.json"), encoding="utf-8") as f:
    genotype = json.load(f)
  summary = {
      "search_seconds": round(sum(elapsed.get(k, 0.0) for k in SEARCH_PHASES), 3),
      "phase_seconds": {k: round(v, 3) for k, v in elapsed.items()},
      "device": f"{device.platform}:{device.device_kind}",
      "devices": jax.device_count(),
      "rounds": config.search.rounds,
      "kept_groups": position.get("kept", {}),
      "derived_edges": {kind: len(genotype[kind]) for kind in darts.CELL_TYPES},
      "derived_params": position.get("derived_params"),
      "derived_params_M": round(position.get("derived_params", 0) / 1e6, 4),
      "genotype": genotype,
  }
  if "test" in position:
    summary["retrain_test"] = position["test"]
  export.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary
