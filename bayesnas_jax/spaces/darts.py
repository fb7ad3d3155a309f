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

import math

import jax
import jax.numpy as jnp

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


def masked_arch(arch, masks):
  """Architecture scalars with pruned ones switched off (masks: plain 0/1)."""
  if masks is None:
    return arch
  return jax.tree_util.tree_map(
      lambda a, m: nn.scale(a, m.astype(nn.value_of(a).dtype)), arch, masks,
      is_leaf=nn.is_probed)


def apply(weights, arch, images, config, masks=None):
  """Logits of the search network for NHWC float images."""
  spec = cell_spec(config)
  plan, _ = cell_plan(config)
  arch = masked_arch(arch, masks)
  stem = weights["stem"]
  x = nn.batch_norm(nn.conv2d(images, stem["w"]), stem["scale"], stem["bias"])
  s0 = s1 = x
  for cell_weights, (kind, index, _, _) in zip(weights["cells"], plan):
    inputs = (_apply_preprocess(cell_weights["pre0"], s0),
              _apply_preprocess(cell_weights["pre1"], s1))
    nodes = apply_cell_edges(cell_weights["edges"], take(arch[kind]["origin"], index),
                             take(arch[kind]["ops"], index), inputs, spec,
                             kind == "reduce", config)
    s0, s1 = s1, nn.concat(nodes)
  pooled = nn.global_avg_pool(s1)
  return nn.dense(pooled, weights["classifier"]["w"], weights["classifier"]["b"])
