"""The DARTS CNN search network with BayesNAS architecture scalars (SPEC §4).

Stem (3×3 conv to stem_multiplier·C, BN), `layers` cells with reductions at
1/3 and 2/3 depth (channels doubled there), each cell preprocessing its inputs
c_{k−2}, c_{k−1} (ReLU-1×1 conv-BN, or FactorizedReduce after a reduction cell)
and concatenating its intermediate nodes; global average pooling and a linear
classifier. Batch norm in cells has no affine parameters.

Weights W and architecture scalars w are separate pytrees. The scalars of one
cell type are stacked over its cells — `arch[type]["origin"]` [n, E] and
`arch[type]["ops"]` [n, E, O] — and form one group per (edge, op) across the
stack (eq. 21).
"""
from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from bayesnas_jax import nn
from bayesnas_jax.spaces import ops as ops_lib
from bayesnas_jax.spaces.cell import CellSpec, apply_cell_edges, init_cell_edges, take

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


def _init_preprocess(key, c_in, c_out, reduce_input, dtype):
  if reduce_input:
    return jax.tree_util.tree_map(lambda a: a[None],
                                  ops_lib.factorized_reduce_init(key, c_in, c_out, dtype))
  return {"w": jax.random.normal(key, (1, c_in, c_out), dtype) * math.sqrt(2.0 / c_in)}


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
  spec = cell_spec(config)
  plan, _ = cell_plan(config)
  stem_channels = config.stem_multiplier * config.channels
  keys = jax.random.split(key, len(plan) + 2)
  weights = {"stem": {
      "w": jax.random.normal(keys[0], (3, 3, in_channels, stem_channels), dtype)
           * math.sqrt(2.0 / (9 * in_channels)),
      "scale": jnp.ones((stem_channels,), dtype), "bias": jnp.zeros((stem_channels,), dtype)}}
  c_prev_prev, c_prev = stem_channels, stem_channels
  cells = []
  for i, (kind, _, channels, reduction_prev) in enumerate(plan):
    k0, k1, k2 = jax.random.split(keys[i + 1], 3)
    cells.append({
        "pre0": _init_preprocess(k0, c_prev_prev, channels, reduction_prev, dtype),
        "pre1": _init_preprocess(k1, c_prev, channels, False, dtype),
        "edges": init_cell_edges(k2, spec, channels, kind == "reduce", dtype)})
    c_prev_prev, c_prev = c_prev, spec.num_nodes * channels
  weights["cells"] = cells
  weights["classifier"] = {
      "w": jax.random.normal(keys[-1], (c_prev, config.num_classes), dtype)
           / math.sqrt(c_prev),
      "b": jnp.zeros((config.num_classes,), dtype)}
  return weights


@functools.lru_cache(maxsize=32)
def _unraveler(config_json, in_channels, dtype_name):
  import ml_collections  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict(json.loads(config_json))
  shapes = jax.eval_shape(
      lambda k: init_weights(k, config, in_channels, jnp.dtype(dtype_name)),
      jax.random.PRNGKey(0))
  zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  return ravel_pytree(zeros)[1]


def unravel_weights(flat, config, in_channels=3):
  """The weight tree of `init_weights` from its flat vector (see `init_flat_weights`).

  The search steps keep W as one vector: the optimizer, gradient clipping and
  weight decay then compile to a handful of kernels instead of a few per leaf
  (hundreds of leaves in an 8-cell supernet). Slicing it inside the forward
  pass is free, and its gradient comes back as one concatenation."""
  key = json.dumps(config.to_dict(), sort_keys=True, default=str)
  unravel = _unraveler(key, int(in_channels), jnp.dtype(flat.dtype).name)
  if not nn.is_probed(flat):
    return unravel(flat)
  values, probes = unravel(flat.value), unravel(flat.probe)
  return jax.tree_util.tree_map(lambda v, p: nn.Probed(v, p, flat.mode), values, probes)


def init_flat_weights(key, config, in_channels=3, dtype=jnp.float32):
  """`init_weights` raveled to one vector (the order of `jax.tree_util`)."""
  return ravel_pytree(init_weights(key, config, in_channels, dtype))[0]


def masked_arch(arch, masks):
  """Architecture scalars with pruned ones switched off (masks: plain 0/1)."""
  if masks is None:
    return arch
  return jax.tree_util.tree_map(
      lambda a, m: nn.scale(a, m.astype(nn.value_of(a).dtype)), arch, masks,
      is_leaf=nn.is_probed)


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


def _stack(trees):
  return jax.tree_util.tree_map(
      lambda *leaves: nn.structural(lambda *v: jnp.stack(v), *leaves), *trees,
      is_leaf=nn.is_probed)


def _pad_rows(pre, rows):
  """ReLU-1×1 conv weights {"w": [1, c_in, C]} zero-padded to c_in = rows."""
  return {"w": nn.structural(
      lambda v: jnp.pad(v, ((0, 0), (0, rows - v.shape[1]), (0, 0))), pre["w"])}


def _pad_channels(x, channels):
  return nn.structural(
      lambda v: jnp.pad(v, ((0, 0),) * 3 + ((0, channels - v.shape[-1]),)), x)


def _apply_run(weights, arch, run, plan, spec, config, s0, s1):
  """Cells `run` (consecutive normal cells, same channels) as one scan.

  The carry is (p0, s0, s1): the preprocessed first input of the next cell and
  the raw outputs of the two cells before it. A step runs cell m on (p0,
  pre1_m(s1)) and preprocesses its successor's first input, pre0_{m+1}(s1),
  with weights stacked one cell ahead (zeros after the last: a wasted 1×1
  conv). The stem output is zero-padded to a cell output's width when it
  feeds the run, and the weights that read it get zero rows: exact, and their
  gradients there are 0."""
  kind = plan[run[0]][0]
  width = spec.num_nodes * plan[run[0]][2]
  cells = [weights["cells"][i] for i in run]
  pre1 = [_pad_rows(c["pre1"], width) for c in cells]
  pre0_next = [_pad_rows(c["pre0"], width) for c in cells[1:]]
  pre0_next.append(jax.tree_util.tree_map(
      lambda w: nn.structural(jnp.zeros_like, w), pre0_next[-1], is_leaf=nn.is_probed))
  xs = (_stack(pre1), _stack([c["edges"] for c in cells]), _stack(pre0_next),
        take(arch[kind]["origin"], [plan[i][1] for i in run]),
        take(arch[kind]["ops"], [plan[i][1] for i in run]))
  # Carries are probed whenever anything is (the scan needs one carry type).
  mode = nn.mode_of(*jax.tree_util.tree_leaves((cells, arch), is_leaf=nn.is_probed))
  p0 = nn.as_probed(_apply_preprocess(cells[0]["pre0"], s0), mode)
  s1 = nn.as_probed(_pad_channels(s1, width), mode)

  def step(carry, xs):
    p0, _, s1 = carry
    pre1_w, edge_w, pre0_w, origin, ops = xs
    nodes = apply_cell_edges(edge_w, origin, ops, (p0, _apply_preprocess(pre1_w, s1)), spec,
                             False, config)
    return (_apply_preprocess(pre0_w, s1), s1, nn.concat(nodes)), None

  (_, s0, s1), _ = jax.lax.scan(step, (p0, s1, s1), xs)
  return s0, s1


def apply(weights, arch, images, config, masks=None):
  """Logits of the search network for NHWC float images.

  Each run of `cell_runs` compiles once (a `lax.scan` over its cells), and
  each cell as two op blocks (see `cell.apply_cell_edges`): the compiled size
  grows with the number of distinct cell shapes, not with the depth."""
  spec = cell_spec(config)
  plan, _ = cell_plan(config)
  arch = masked_arch(arch, masks)
  stem = weights["stem"]
  x = nn.batch_norm(nn.conv2d(images, stem["w"]), stem["scale"], stem["bias"])
  s0 = s1 = x
  for run in cell_runs(config):
    if len(run) > 1:
      s0, s1 = _apply_run(weights, arch, run, plan, spec, config, s0, s1)
      continue
    cell_weights = weights["cells"][run[0]]
    kind, index, _, _ = plan[run[0]]
    inputs = (_apply_preprocess(cell_weights["pre0"], s0),
              _apply_preprocess(cell_weights["pre1"], s1))
    nodes = apply_cell_edges(cell_weights["edges"], take(arch[kind]["origin"], index),
                             take(arch[kind]["ops"], index), inputs, spec,
                             kind == "reduce", config)
    s0, s1 = s1, nn.concat(nodes)
  pooled = nn.global_avg_pool(s1)
  return nn.dense(pooled, weights["classifier"]["w"], weights["classifier"]["b"])
