"""The DARTS CNN space (SPEC §4, proxy cell search) as a `SearchSpace`.

The network is `darts.apply` on the packed flat weight vector
(`darts.init_flat_weights`); the scalars are stacked per cell type, "normal"
and "reduce", and share one DAG (`darts.cell_spec`). An architecture is the
genotype dict of `export` (`{"normal": [[op, from, to], ...], "normal_concat":
[...], "reduce": ..., "reduce_concat": ...}`), derived per node by the top-k
surviving (edge, op) pairs by γ (`export.derive_cell`).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import export, nn
from bayesnas_jax.nn.conv import IMPLS
from bayesnas_jax.spaces import cell as cell_lib
from bayesnas_jax.spaces import darts
from bayesnas_jax.spaces import ops as ops_lib
from bayesnas_jax.spaces.base import SearchSpace, group_keep, group_values


def _need(condition, field, expected, value):
  if not condition:
    raise ValueError(f"config.space.{field}: expected {expected}, got {value!r}")


def validate(space):
  for field in ("channels", "layers", "num_nodes", "stem_multiplier", "num_classes"):
    value = space[field]
    _need(isinstance(value, int) and not isinstance(value, bool) and value > 0, field,
          "a positive integer", value)
  _need(space.depthwise_impl in IMPLS, "depthwise_impl", f"one of {IMPLS}",
        space.depthwise_impl)
  for field in ("scan_inputs", "remat"):
    _need(isinstance(space.get(field, False), bool), field, "true or false", space.get(field))
  ops_lib.check_ops(list(space.ops))
  cell_lib.origin_after(space)
  _need(space.channels % 2 == 0, "channels", "an even number", space.channels)


def derive(space_config, prior_state, search_config):
  """The discrete cells: prune by γ, then per node the top-k by the rank score
  (`search.rank_by`) under `search.derivation` ("pairs" or "edges", see
  `export.derive_cell`)."""
  spec = darts.cell_spec(space_config)
  cells = {}
  for kind in darts.CELL_TYPES:
    if kind not in prior_state["gamma"]:
      cells[kind] = {"edges": [], "concat": []}
      continue
    score = group_values(prior_state.get("score", prior_state["gamma"])[kind]["ops"],
                         search_config.grouping)
    keep = group_keep(prior_state["keep"][kind]["ops"], search_config.grouping)
    cells[kind] = export.derive_cell(score, keep, spec, k=search_config.top_k,
                                     rule=search_config.get("derivation", "pairs"))
  return export.genotype_from_cells(cells["normal"], cells["reduce"])


def genotype_masks(space_config, genotype, arch):
  """0/1 masks of the architecture scalars that switch on exactly the genotype's
  (edge, op) pairs (and their origins) in every cell of each type."""
  spec = darts.cell_spec(space_config)
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


def parameter_count(space_config, genotype, in_channels=3):
  """Parameters of the derived network at search size (stem, preprocessing, the
  genotype's ops in every cell, classifier); BN without affine has none."""
  spec = darts.cell_spec(space_config)
  shapes = darts.weight_shapes(space_config, in_channels)
  plan, _ = darts.cell_plan(space_config)

  def size(tree):
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))

  total = size(shapes["stem"]) + size(shapes["classifier"])
  for cell, (kind, _, _, _) in zip(shapes["cells"], plan):
    total += size(cell["pre0"]) + size(cell["pre1"])
    for op, source, _ in genotype[kind]:
      edges = spec.out_edges(source)
      stacked = cell["edges"][f"from_{source}"][op]
      total += size(stacked) // len(edges)
  return total


def write(space_config, workdir, genotype, prior_state, search_config):
  """genotype.json (+ DARTS literal) and the plots of the cells and their γ."""
  spec = darts.cell_spec(space_config)
  export.write_genotype(workdir, genotype, spec.num_nodes, spec.num_inputs)
  plots = os.path.join(workdir, "plots")
  for kind in darts.CELL_TYPES:
    if kind not in prior_state["gamma"]:
      continue
    cell = {"edges": genotype[kind], "concat": genotype[f"{kind}_concat"]}
    export.plot_cell(cell, os.path.join(plots, f"{kind}_cell"), f"BayesNAS {kind} cell")
    export.plot_gamma(group_values(prior_state["gamma"][kind]["ops"], search_config.grouping),
                      group_keep(prior_state["keep"][kind]["ops"], search_config.grouping),
                      spec, os.path.join(plots, f"{kind}_gamma"),
                      f"{kind} cell: prior variance γ")
  decided = decisions(space_config, genotype, prior_state, search_config)
  by_prior = sum(d["decided_by"] == "prior" for d in decided)
  return {"derived_edges": {kind: len(genotype[kind]) for kind in darts.CELL_TYPES},
          "decided_by_prior": by_prior, "decided_by_rank": len(decided) - by_prior,
          "decisions": decided}


def decisions(space_config, genotype, prior_state, search_config):
  """Per cell type and intermediate node: decided by the prior when the prune
  rule left exactly the derived inputs (top_k edges, one op each), else by
  rank (`search.rank_by`) among more survivors, or on an empty node."""
  spec = darts.cell_spec(space_config)
  out = []
  for kind in darts.CELL_TYPES:
    if kind not in prior_state["gamma"]:
      continue
    keep = np.reshape(group_keep(prior_state["keep"][kind]["ops"], search_config.grouping),
                      (spec.num_edges, len(spec.ops)))
    for node in spec.intermediate:
      survivors = [f"{spec.ops[o]} {spec.edges[e][0]}->{node}" for e in spec.in_edges(node)
                   for o in range(len(spec.ops)) if keep[e, o]]
      chosen = [f"{op} {j}->{k}" for op, j, k in genotype[kind] if k == node]
      exact = (len(survivors) == int(search_config.top_k)
               and len({x.split()[1] for x in survivors}) == len(survivors))
      out.append({"edge": f"{kind} node {node}", "op": ", ".join(chosen) or "none",
                  "decided_by": "prior" if exact else "rank", "survivors": survivors,
                  "empty": not survivors, "margin": None})
  return out


def random_genotype(space_config, rng, k=2):
  """A cell of each type drawn uniformly as DARTS's random baseline draws it:
  per intermediate node k distinct input edges, an op for each."""
  spec = darts.cell_spec(space_config)
  genotype = {}
  for kind in darts.CELL_TYPES:
    edges = []
    for node in spec.intermediate:
      sources = rng.choice(node, size=min(k, node), replace=False)
      for source in sorted(int(s) for s in sources):
        edges.append([spec.ops[int(rng.integers(len(spec.ops)))], source, node])
    genotype[kind] = edges
    genotype[f"{kind}_concat"] = list(spec.intermediate)
  return genotype


def make(space_config) -> SearchSpace:
  """The DARTS space of `space_config` (`configs/darts_cifar10_search.py`)."""
  spec = darts.cell_spec(space_config)
  _, counts = darts.cell_plan(space_config)

  def init_weights(key, image_shape):
    return darts.init_flat_weights(key, space_config, in_channels=image_shape[-1])

  def apply(weights, arch, images, masks=None):
    if not isinstance(weights, dict):
      weights = darts.unravel_weights(weights, space_config, nn.value_of(images).shape[-1])
    return darts.apply(weights, arch, images, space_config, masks)

  def load(path):
    return export.load_genotype(path, ops=spec.ops, num_inputs=spec.num_inputs)

  return SearchSpace(
      name="darts",
      cells={kind: spec for kind in darts.CELL_TYPES if counts[kind]},
      init_weights=init_weights,
      init_arch=lambda: darts.init_arch(space_config),
      apply=apply,
      derive=lambda prior_state, search: derive(space_config, prior_state, search),
      architecture_masks=lambda genotype, arch: genotype_masks(space_config, genotype, arch),
      export=lambda workdir, genotype, prior_state, search: write(
          space_config, workdir, genotype, prior_state, search),
      load_architecture=load,
      random_architecture=lambda rng: random_genotype(space_config, rng),
      parameter_count=lambda genotype: parameter_count(space_config, genotype))
