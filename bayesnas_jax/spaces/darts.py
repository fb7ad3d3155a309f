"""The DARTS CNN space (SPEC §4, proxy cell search): the search network with
BayesNAS architecture scalars, and the space as a `SearchSpace` (`make`).

Stem (3×3 conv to stem_multiplier·C, BN), `layers` cells with reductions at
1/3 and 2/3 depth (channels doubled there), each cell preprocessing its inputs
c_{k−2}, c_{k−1} (ReLU-1×1 conv-BN, or FactorizedReduce after a reduction cell)
and concatenating its intermediate nodes; global average pooling and a linear
classifier. Batch norm in cells has no affine parameters.

Weights W and architecture scalars w are separate pytrees. The scalars of one
cell type are stacked over its cells — `arch[type]["origin"]` [n, E] and
`arch[type]["ops"]` [n, E, O] — and form one group per (edge, op) across the
stack (eq. 21).

As a `SearchSpace`, the network is `apply` on the packed flat weight vector
(`init_flat_weights`); the scalars are stacked per cell type, "normal" and
"reduce", and share one DAG (`cell_spec`). An architecture is the genotype
dict of `genotypes` (`{"normal": [[op, from, to], ...], "normal_concat": [...],
"reduce": ..., "reduce_concat": ...}`), derived per node by the top-k
surviving (edge, op) pairs by γ (`derivation.derive_cell`).
"""
from __future__ import annotations

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import derivation, genotypes, nn, plots
from bayesnas_jax.nn.conv import IMPLS
from bayesnas_jax.spaces import ops as ops_lib
from bayesnas_jax.spaces.base import SearchSpace, group_keep, group_values
from bayesnas_jax.spaces.cell import (CellSpec, apply_cell_edges, crop_to, init_cell_edges,
                                      masked_arch, origin_after, pack_cell_edges, ravel_rows,
                                      take, unpack_cell_edges, unravel_rows)

CELL_TYPES = ("normal", "reduce")


def cell_spec(config) -> CellSpec:
  ops_lib.check_ops(list(config.ops))
  return CellSpec(tuple(config.ops), int(config.num_nodes), 2)


def reduction_layers(layers):
  return (layers // 3, 2 * layers // 3)


def cell_plan(config):
  """Per cell: (type, index within type, channels C, reduction_prev)."""
  plan = []
  channels = config.channels
  counts = {"normal": 0, "reduce": 0}
  reduction_prev = False
  for layer in range(config.layers):
    reduction = layer in reduction_layers(config.layers)
    if reduction:
      channels *= 2
    kind = "reduce" if reduction else "normal"
    plan.append((kind, counts[kind], channels, reduction_prev))
    counts[kind] += 1
    reduction_prev = reduction
  return plan, counts


def _init_preprocess(rng, c_in, c_out, reduce_input, dtype):
  shapes = (ops_lib.factorized_reduce_shapes(c_in, c_out) if reduce_input
            else {"w": ((c_in, c_out), c_in)})
  return ops_lib.init_edges(rng, shapes, 1, dtype)


def _apply_preprocess(weights, x):
  if "w1" in weights:
    return ops_lib.factorized_reduce(weights, x)
  return nn.batch_norm(ops_lib.pointwise(nn.relu(x), weights["w"]))


def init_arch(config, dtype=jnp.float32):
  """Architecture scalars, all initialised to 1 (Algorithm 1)."""
  spec = cell_spec(config)
  _, counts = cell_plan(config)
  return {kind: {"origin": jnp.ones((counts[kind], spec.num_edges), dtype),
                 "ops": jnp.ones((counts[kind], spec.num_edges, len(spec.ops)), dtype)}
          for kind in CELL_TYPES if counts[kind]}


def init_weights(key, config, in_channels=3, dtype=jnp.float32):
  """The supernet's weights (He-normal; stem BN affine 1 and 0), drawn on the
  host from a generator seeded by `key` (a concrete JAX PRNG key or an int):
  the same key gives the same weights."""
  spec = cell_spec(config)
  plan, _ = cell_plan(config)
  rng = ops_lib.numpy_rng(key)
  stem_channels = config.stem_multiplier * config.channels
  weights = {"stem": {
      "w": jnp.asarray(rng.standard_normal((3, 3, in_channels, stem_channels))
                       * math.sqrt(2.0 / (9 * in_channels)), dtype),
      "scale": jnp.ones((stem_channels,), dtype), "bias": jnp.zeros((stem_channels,), dtype)}}
  c_prev_prev, c_prev = stem_channels, stem_channels
  cells = []
  for kind, _, channels, reduction_prev in plan:
    cells.append({
        "pre0": _init_preprocess(rng, c_prev_prev, channels, reduction_prev, dtype),
        "pre1": _init_preprocess(rng, c_prev, channels, False, dtype),
        "edges": init_cell_edges(rng, spec, channels, kind == "reduce", dtype)})
    c_prev_prev, c_prev = c_prev, spec.num_nodes * channels
  weights["cells"] = cells
  weights["classifier"] = {
      "w": jnp.asarray(rng.standard_normal((c_prev, config.num_classes)) / math.sqrt(c_prev),
                       dtype),
      "b": jnp.zeros((config.num_classes,), dtype)}
  return weights


def _config_key(config):
  return json.dumps(config.to_dict(), sort_keys=True, default=str)


def _config_of(key):
  import ml_collections  # pylint: disable=import-outside-toplevel
  return ml_collections.ConfigDict(json.loads(key))


@functools.lru_cache(maxsize=32)
def _canonical_shapes(config_key, in_channels, dtype_name):
  weights = init_weights(0, _config_of(config_key), in_channels, jnp.dtype(dtype_name))
  return jax.tree_util.tree_map(lambda w: jax.ShapeDtypeStruct(w.shape, w.dtype), weights)


def weight_shapes(config, in_channels=3, dtype=jnp.float32):
  """Shapes and dtypes (`jax.ShapeDtypeStruct`) of `init_weights`'s tree."""
  return _canonical_shapes(_config_key(config), int(in_channels), jnp.dtype(dtype).name)


@functools.lru_cache(maxsize=32)
def _packed_shapes(config_key, in_channels, dtype_name, rows):
  """Shapes of `pack_weights`'s output; with rows=False the cells of each run
  stay a list of trees (their row templates)."""
  config = _config_of(config_key)
  return jax.eval_shape(lambda w: _pack(w, config, rows),
                        _canonical_shapes(config_key, in_channels, dtype_name))


def _pack(weights, config, rows=True):
  spec = cell_spec(config)
  plan, _ = cell_plan(config)
  runs = []
  for run in cell_runs(config):
    cells = [weights["cells"][i] for i in run]
    reduction = plan[run[0]][0] == "reduce"
    if len(run) == 1:
      runs.append({"pre0": cells[0]["pre0"], "pre1": cells[0]["pre1"],
                   "edges": pack_cell_edges(cells[0]["edges"], spec, reduction, config)})
      continue
    width = spec.num_nodes * plan[run[0]][2]
    pre0_next = [_pad_rows(c["pre0"], width) for c in cells[1:]]
    pre0_next.append(jax.tree_util.tree_map(
        lambda w: nn.structural(jnp.zeros_like, w), pre0_next[-1], is_leaf=nn.is_probed))
    rows_ = [{"pre1": _pad_rows(c["pre1"], width), "pre0_next": nxt,
              "edges": pack_cell_edges(c["edges"], spec, False, config)}
             for c, nxt in zip(cells, pre0_next)]
    runs.append({"pre0": cells[0]["pre0"], "cells": ravel_rows(rows_) if rows else rows_})
  return {"stem": weights["stem"], "runs": runs, "classifier": weights["classifier"]}


def pack_weights(weights, config):
  """The weight tree of `init_weights` in the layout the network reads.

  Per run of `cell_runs`: a lone cell keeps its preprocessing weights and
  packs its edges (`cell.pack_cell_edges`); a scanned run keeps its first
  cell's pre0 and stores one row per cell, [R, P], holding that cell's pre1,
  its successor's pre0 (zeros after the last) and its packed edges, raveled.
  Weights that read the zero-padded stem get zero rows there. All padding is
  exact zeros whose gradients are exactly zero, so a packed vector trains like
  the tree it came from (`unpack_weights` inverts this)."""
  return _pack(weights, config)


def unpack_weights(packed, config, in_channels=3):
  """The weight tree of `init_weights` from `pack_weights`'s layout."""
  spec = cell_spec(config)
  plan, _ = cell_plan(config)
  dtype = jnp.dtype(nn.value_of(packed["stem"]["w"]).dtype).name
  key = _config_key(config)
  templates = _packed_shapes(key, int(in_channels), dtype, False)["runs"]
  cells = [None] * len(plan)
  for run, packed_run, template in zip(cell_runs(config), packed["runs"], templates):
    reduction = plan[run[0]][0] == "reduce"
    if len(run) == 1:
      rows_ = [packed_run]
    else:
      stacked = unravel_rows(packed_run["cells"], template["cells"][0])
      rows_ = [jax.tree_util.tree_map(lambda x, m=m: nn.structural(lambda v: v[m], x),
                                      stacked, is_leaf=nn.is_probed)
               for m in range(len(run))]
    pre0 = packed_run["pre0"]
    for i, row in zip(run, rows_):
      cells[i] = {"pre0": pre0, "pre1": row["pre1"],
                  "edges": unpack_cell_edges(row["edges"], spec, reduction, config,
                                             plan[i][2])}
      pre0 = row.get("pre0_next")
  weights = {"stem": packed["stem"], "cells": cells, "classifier": packed["classifier"]}
  return crop_to(weights, _canonical_shapes(key, int(in_channels), dtype))


def unravel_weights(flat, config, in_channels=3):
  """The packed weight tree (`pack_weights`) from its flat vector (see
  `init_flat_weights`).

  The search steps keep W as one vector: the optimizer, gradient clipping and
  weight decay then compile to a handful of kernels instead of a few per leaf,
  and the packed layout makes reading it inside the forward pass a few slices
  (its gradient comes back as one concatenation)."""
  dtype = jnp.dtype(nn.value_of(flat).dtype).name
  return unravel_rows(flat, _packed_shapes(_config_key(config), int(in_channels), dtype, True))


def init_flat_weights(key, config, in_channels=3, dtype=jnp.float32):
  """`init_weights` packed (`pack_weights`) and raveled to one vector."""
  weights = init_weights(key, config, in_channels, dtype)
  # Jitted: a few hundred pads and concatenations run faster compiled than eagerly.
  return jax.jit(lambda w: ravel_rows([pack_weights(w, config)])[0])(weights)


def cell_runs(config):
  """Consecutive normal cells with equal channels, as lists of cell indices;
  every other cell is a run of its own. A run compiles as one `lax.scan`."""
  plan, _ = cell_plan(config)
  out_channels = config.num_nodes * config.channels
  runs = []
  for i, (kind, _, channels, _) in enumerate(plan):
    previous = plan[runs[-1][-1]] if runs else None
    joins = (previous is not None and kind == "normal" and previous[0] == "normal"
             and previous[2] == channels)
    # The first cell reads the stem; it can share a body only if the stem
    # output can be zero-padded to a cell output's width.
    if joins and runs[-1][0] == 0 and config.stem_multiplier * config.channels > out_channels:
      joins = len(runs[-1]) > 1
    if joins:
      runs[-1].append(i)
    else:
      runs.append([i])
  return runs


def _pad_rows(pre, rows):
  """ReLU-1×1 conv weights {"w": [1, c_in, C]} zero-padded to c_in = rows."""
  return {"w": nn.structural(
      lambda v: jnp.pad(v, ((0, 0), (0, rows - v.shape[1]), (0, 0))), pre["w"])}


def _pad_channels(x, channels):
  return nn.structural(
      lambda v: jnp.pad(v, ((0, 0),) * 3 + ((0, channels - v.shape[-1]),)), x)


def _apply_run(packed_run, template, arch, run, plan, spec, config, s0, s1):
  """Cells `run` (consecutive normal cells, same channels) as one scan.

  The carry is (p0, s0, s1): the preprocessed first input of the next cell and
  the raw outputs of the two cells before it. A step unravels its cell's row
  of `packed_run["cells"]` (`template`: the row's tree), runs the cell on (p0,
  pre1_m(s1)) and preprocesses its successor's first input, pre0_{m+1}(s1)
  (zero weights after the last: a wasted 1×1 conv). The stem output is
  zero-padded to a cell output's width when it feeds the run."""
  kind = plan[run[0]][0]
  width = spec.num_nodes * plan[run[0]][2]
  xs = (packed_run["cells"], take(arch[kind]["origin"], [plan[i][1] for i in run]),
        take(arch[kind]["ops"], [plan[i][1] for i in run]))
  # Carries are probed whenever anything is (the scan needs one carry type).
  mode = nn.mode_of(*jax.tree_util.tree_leaves((packed_run, arch), is_leaf=nn.is_probed))
  p0 = nn.as_probed(_apply_preprocess(packed_run["pre0"], s0), mode)
  s1 = nn.as_probed(_pad_channels(s1, width), mode)

  def step(carry, xs):
    p0, _, s1 = carry
    row, origin, ops = xs
    cell = unravel_rows(row, template)
    nodes = apply_cell_edges(cell["edges"], origin, ops,
                             (p0, _apply_preprocess(cell["pre1"], s1)), spec, False, config)
    return (_apply_preprocess(cell["pre0_next"], s1), s1, nn.concat(nodes)), None

  (_, s0, s1), _ = jax.lax.scan(step, (p0, s1, s1), xs)
  return s0, s1


def apply(weights, arch, images, config, masks=None):
  """Logits of the search network for NHWC float images.

  `weights` is the tree of `init_weights` or, cheaper to compile, its packed
  layout (`pack_weights`, `unravel_weights`). Each run of `cell_runs`
  compiles once (a `lax.scan` over its cells), and each cell as one or two op
  blocks (see `cell.apply_cell_edges`): the compiled size grows with the
  number of distinct cell shapes, not with the depth."""
  spec = cell_spec(config)
  plan, _ = cell_plan(config)
  arch = masked_arch(arch, masks)
  if "cells" in weights:
    weights = pack_weights(weights, config)
  templates = _packed_shapes(_config_key(config), 3, "float32", False)["runs"]
  stem = weights["stem"]
  x = nn.batch_norm(nn.conv2d(images, stem["w"]), stem["scale"], stem["bias"])
  s0 = s1 = x
  for run, packed_run, template in zip(cell_runs(config), weights["runs"], templates):
    if len(run) > 1:
      s0, s1 = _apply_run(packed_run, template["cells"][0], arch, run, plan, spec, config,
                          s0, s1)
      continue
    kind, index, _, _ = plan[run[0]]
    inputs = (_apply_preprocess(packed_run["pre0"], s0),
              _apply_preprocess(packed_run["pre1"], s1))
    nodes = apply_cell_edges(packed_run["edges"], take(arch[kind]["origin"], index),
                             take(arch[kind]["ops"], index), inputs, spec,
                             kind == "reduce", config)
    s0, s1 = s1, nn.concat(nodes)
  pooled = nn.global_avg_pool(s1)
  return nn.dense(pooled, weights["classifier"]["w"], weights["classifier"]["b"])


# ----------------------------------------------------------------------------
# The space as a `SearchSpace`.


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
  origin_after(space)
  _need(space.channels % 2 == 0, "channels", "an even number", space.channels)


def derive(space_config, prior_state, search_config):
  """The discrete cells: prune by γ, then per node the top-k by the rank score
  (`search.rank_by`) under `search.derivation` ("pairs" or "edges", see
  `derivation.derive_cell`)."""
  spec = cell_spec(space_config)
  cells = {}
  for kind in CELL_TYPES:
    if kind not in prior_state.gamma:
      cells[kind] = {"edges": [], "concat": []}
      continue
    score = group_values(prior_state.rank[kind]["ops"],
                         search_config.grouping)
    keep = group_keep(prior_state.keep[kind]["ops"], search_config.grouping)
    cells[kind] = derivation.derive_cell(score, keep, spec, k=search_config.top_k,
                                         rule=search_config.get("derivation", "pairs"))
  return genotypes.genotype_from_cells(cells["normal"], cells["reduce"])


def genotype_masks(space_config, genotype, arch):
  """0/1 masks of the architecture scalars that switch on exactly the genotype's
  (edge, op) pairs (and their origins) in every cell of each type."""
  spec = cell_spec(space_config)
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
  spec = cell_spec(space_config)
  shapes = weight_shapes(space_config, in_channels)
  plan, _ = cell_plan(space_config)

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
  spec = cell_spec(space_config)
  genotypes.write_genotype(workdir, genotype, spec.num_nodes, spec.num_inputs)
  plot_dir = os.path.join(workdir, "plots")
  for kind in CELL_TYPES:
    if kind not in prior_state.gamma:
      continue
    cell = {"edges": genotype[kind], "concat": genotype[f"{kind}_concat"]}
    plots.plot_cell(cell, os.path.join(plot_dir, f"{kind}_cell"), f"BayesNAS {kind} cell")
    plots.plot_gamma(group_values(prior_state.gamma[kind]["ops"], search_config.grouping),
                     group_keep(prior_state.keep[kind]["ops"], search_config.grouping),
                     spec, os.path.join(plot_dir, f"{kind}_gamma"),
                     f"{kind} cell: prior variance γ")
  decided = decisions(space_config, genotype, prior_state, search_config)
  by_prior = sum(d["decided_by"] == "prior" for d in decided)
  return {"derived_edges": {kind: len(genotype[kind]) for kind in CELL_TYPES},
          "decided_by_prior": by_prior, "decided_by_rank": len(decided) - by_prior,
          "decisions": decided}


def decisions(space_config, genotype, prior_state, search_config):
  """Per cell type and intermediate node: decided by the prior when the prune
  rule left exactly the derived inputs (top_k edges, one op each), else by
  rank (`search.rank_by`) among more survivors, or on an empty node."""
  spec = cell_spec(space_config)
  out = []
  for kind in CELL_TYPES:
    if kind not in prior_state.gamma:
      continue
    keep = np.reshape(group_keep(prior_state.keep[kind]["ops"], search_config.grouping),
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
  spec = cell_spec(space_config)
  genotype = {}
  for kind in CELL_TYPES:
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
  spec = cell_spec(space_config)
  _, counts = cell_plan(space_config)

  def init_space_weights(key, image_shape):
    return init_flat_weights(key, space_config, in_channels=image_shape[-1])

  def apply_space(weights, arch, images, masks=None):
    if not isinstance(weights, dict):
      weights = unravel_weights(weights, space_config, nn.value_of(images).shape[-1])
    return apply(weights, arch, images, space_config, masks)

  def load(path):
    return genotypes.load_genotype(path, ops=spec.ops, num_inputs=spec.num_inputs)

  return SearchSpace(
      name="darts",
      cells={kind: spec for kind in CELL_TYPES if counts[kind]},
      init_weights=init_space_weights,
      init_arch=lambda: init_arch(space_config),
      apply=apply_space,
      derive=lambda prior_state, search: derive(space_config, prior_state, search),
      architecture_masks=lambda genotype, arch: genotype_masks(space_config, genotype, arch),
      export=lambda workdir, genotype, prior_state, search: write(
          space_config, workdir, genotype, prior_state, search),
      load_architecture=load,
      random_architecture=lambda rng: random_genotype(space_config, rng),
      parameter_count=lambda genotype: parameter_count(space_config, genotype))
