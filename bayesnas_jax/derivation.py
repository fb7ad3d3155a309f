"""Derivation of discrete cells from the prior's γ (SPEC §4, "Derived cell").

* `derive_cell`: prune by γ, then keep per intermediate node the k strongest
  surviving (edge, op) pairs by γ. A node without a selected input is dead, and
  pairs leaving a dead node do not survive (SPEC §3 step 4), so nodes are
  visited in order and only live sources compete.
* `architecture_records`: the flat per-scalar records of rounds/*.json and
  architecture.json.

Pure numpy: jax arrays are accepted through `np.asarray`.
"""
from __future__ import annotations

import math

import numpy as np

PRUNE_THRESHOLD = 1.0 / (2.0 * math.pi * math.e)  # γ ≤ 1/(2πe) ⇔ entropy ≤ 0 (= prior's)
DERIVATIONS = ("pairs", "edges")


def derive_cell(op_gamma, op_keep, spec, k=2, origin_keep=None, rule="pairs"):
  """The discrete cell: {"edges": [[op, from, to], ...], "concat": [nodes]}.

  op_gamma, op_keep: [E, O] in the edge order of `spec` (a `CellSpec`): the
  score to rank by (γ, or another `search.rank_by` score) and what survived
  pruning; origin_keep [E], if given, switches off every op of a pruned edge.
  Per intermediate node, from live sources:
  * rule "pairs": the k kept (edge, op) pairs with the largest score (two ops
    may land on one edge);
  * rule "edges" (DARTS's rule): the best kept op of each edge, then the k
    edges whose best op scores highest (one op per edge).
  Ties (and NaN scores, ranked last) are broken by edge, then op index. Edges
  come sorted by (to, from, op index); "concat" lists the intermediate nodes
  with at least one selected input.
  """
  if rule not in DERIVATIONS:
    raise ValueError(f"config.search.derivation: expected one of {DERIVATIONS}, got "
                     f"{rule!r}")
  gamma = np.asarray(op_gamma, np.float64)
  keep = np.asarray(op_keep, bool)
  shape = (spec.num_edges, len(spec.ops))
  if gamma.shape != shape or keep.shape != shape:
    raise ValueError(f"derive_cell: expected op_gamma and op_keep of shape {shape} "
                     f"[edges, ops], got {gamma.shape} and {keep.shape}")
  if int(k) < 1:
    raise ValueError(f"derive_cell: expected k ≥ 1, got {k}")
  if origin_keep is not None:
    keep = keep & np.asarray(origin_keep, bool).reshape(spec.num_edges, 1)
  rank = np.where(np.isnan(gamma), -np.inf, gamma)
  alive = set(range(spec.num_inputs))
  edges = []
  for node in spec.intermediate:
    candidates = [(-rank[e, o], e, o) for e in spec.in_edges(node)
                  for o in range(len(spec.ops))
                  if keep[e, o] and spec.edges[e][0] in alive]
    if rule == "edges":  # the best op of each edge, then the best edges
      best = {}
      for candidate in sorted(candidates):
        best.setdefault(candidate[1], candidate)
      candidates = list(best.values())
    chosen = sorted(candidates)[:int(k)]
    if chosen:
      alive.add(node)
    for _, e, o in sorted(chosen, key=lambda t: (spec.edges[t[1]][0], t[2])):
      edges.append([spec.ops[o], int(spec.edges[e][0]), int(node)])
  return {"edges": edges, "concat": [n for n in spec.intermediate if n in alive]}


def architecture_records(round_index, cell_type, spec, parts):
  """Flat per-scalar records of one cell type (rounds/*.json, architecture.json).

  parts = {"ops": fields, "origin": fields} ("origin" optional). Each fields
  dict maps "w", "H", "C", "omega", "s", "gamma", "kept" to arrays that are
  either per member — [n_cells, E, O] for ops, [n_cells, E] for origins — or per
  group, without the leading n_cells axis (one value shared by the cells of a
  type, eq. 21); "w" must be per member. One record per cell, edge and op (the
  origin first, op "origin"), named e.g. "normal/cell0/2->3/sep_conv_3x3".
  """
  arrays = {}
  for part, per_edge in (("origin", ()), ("ops", (len(spec.ops),))):
    if part in parts:
      shape = np.shape(parts[part]["w"])[:1] + (spec.num_edges,) + per_edge
      try:
        arrays[part] = {name: np.broadcast_to(np.asarray(value), shape)
                        for name, value in parts[part].items()}
      except ValueError as err:
        raise ValueError(f"architecture_records {cell_type}/{part}: expected arrays of "
                         f"shape {shape} or {shape[1:]} (w per member): {err}") from None
  records = []
  for cell in range(next(iter(arrays.values()))["w"].shape[0] if arrays else 0):
    for e, (source, target) in enumerate(spec.edges):
      for part, op_names in (("origin", ("origin",)), ("ops", spec.ops)):
        for o, op in enumerate(op_names if part in arrays else ()):
          index = (cell, e) if part == "origin" else (cell, e, o)
          records.append({
              "round": int(round_index), "name": f"{cell_type}/cell{cell}/{source}->{target}/{op}",
              "cell_type": cell_type, "cell": cell, "from": int(source), "to": int(target),
              "op": op, **{name: bool(a[index]) if name == "kept" else float(a[index])
                           for name, a in arrays[part].items()}})
  return records
