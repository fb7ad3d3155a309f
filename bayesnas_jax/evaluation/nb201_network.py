"""The evaluation network of a NAS-Bench-201 cell (Dong & Yang, ICLR 2020).

The macro network of the NB201 search space (`spaces/nb201.py`) with one op per
edge: 3×3 stem conv to C with BN; three stages of N cells at C, 2C, 4C with the
residual reduction block between them (ReLU-conv3×3 stride 2-BN, ReLU-conv3×3-BN,
shortcut 2×2 average pool then 1×1 conv); BN, ReLU, global average pool,
linear. Cell node k sums op(node j) over its edges j → k that are not `none`
(a node without such edges is zero); the cell outputs node 3. Batch norm is
affine with running statistics (`layers.bn`, PyTorch's update rule); there is
no auxiliary head and no drop-path.

A genotype here is the tuple of the six edges' ops in NB201 order (0→1, 0→2,
1→2, 0→3, 1→3, 2→3), read from an NB201 string or a search's genotype.json by
`load`. `config` is the `model` section of configs/nb201_cifar10_eval.py:
channels, cells_per_stage, num_classes, in_channels, bn_momentum.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from bayesnas_jax import nn
from bayesnas_jax.evaluation import layers
from bayesnas_jax.spaces import nb201

EDGES = nb201.cell_spec().edges


def canonical(genotype):
  """The six ops as a tuple, from a tuple or an architecture dict."""
  if isinstance(genotype, tuple):
    return genotype
  ops = {(int(j), int(k)): str(op) for op, j, k in genotype[nb201.KIND]}
  return tuple(ops[edge] for edge in EDGES)


def load(path):
  """The canonical genotype of an NB201 string file or genotype.json."""
  return canonical(nb201.load_architecture(path))


def genotype_dict(genotype):
  edges = [[op, j, k] for op, (j, k) in zip(genotype, EDGES)]
  return {nb201.KIND: edges, "nb201": nb201.arch_string({nb201.KIND: edges})}


def _op_init(key, op, channels, dtype):
  if op == "nor_conv_1x1":
    return layers.conv_bn_init(key, 1, channels, channels, dtype)
  if op == "nor_conv_3x3":
    return layers.conv_bn_init(key, 3, channels, channels, dtype)
  return {}, {}


def _op_apply(op, params, stats, x, ctx):
  if op in ("nor_conv_1x1", "nor_conv_3x3"):
    return layers.conv_bn(params, stats, nn.relu(x), 1, ctx)
  if op == "avg_pool_3x3":
    return nn.avg_pool(x, 3, 1), stats
  if op == "skip_connect":
    return x, stats
  raise ValueError(f"nb201 genotype: unknown op {op!r}")


def init(key, genotype, config, dtype=jnp.float32):
  """(params, batch_stats) of the evaluation network of `genotype`."""
  genotype = canonical(genotype)
  c, n = config["channels"], config["cells_per_stage"]
  keys = iter(jax.random.split(key, 3 * n * len(EDGES) + 8))
  params, stats = {}, {}
  params["stem"], stats["stem"] = layers.conv_bn_init(next(keys), 3,
                                                      config.get("in_channels", 3), c, dtype)
  params["cells"], stats["cells"] = [], []
  params["reductions"], stats["reductions"] = [], []
  for stage in range(3):
    width = c * 2 ** stage
    if stage:
      a = layers.conv_bn_init(next(keys), 3, width // 2, width, dtype)
      b = layers.conv_bn_init(next(keys), 3, width, width, dtype)
      shortcut = jax.random.normal(next(keys), (width // 2, width), dtype) * math.sqrt(
          2.0 / (width // 2))
      params["reductions"].append({"conv_a": a[0], "conv_b": b[0], "shortcut": shortcut})
      stats["reductions"].append({"conv_a": a[1], "conv_b": b[1]})
    for _ in range(n):
      cell = [_op_init(next(keys), op, width, dtype) for op in genotype]
      params["cells"].append([p for p, _ in cell])
      stats["cells"].append([s for _, s in cell])
  params["last_bn"], stats["last_bn"] = layers.bn_init(4 * c, dtype)
  params["classifier"] = {
      "w": jax.random.normal(next(keys), (4 * c, config["num_classes"]), dtype)
           / math.sqrt(4 * c),
      "b": jnp.zeros((config["num_classes"],), dtype)}
  return params, stats


def _cell(params, stats, x, genotype, ctx):
  nodes, new_stats = [x], list(stats)  # edges without BN keep their (empty) stats
  for k in range(1, 4):
    total = None
    for e, (j, target) in enumerate(EDGES):
      if target != k or genotype[e] == nb201.NONE:
        continue
      y, new_stats[e] = _op_apply(genotype[e], params[e], stats[e], nodes[j], ctx)
      total = y if total is None else total + y
    nodes.append(jnp.zeros_like(x) if total is None else total)
  return nodes[-1], new_stats


def _reduction(params, stats, x, ctx):
  y, a = layers.conv_bn(params["conv_a"], stats["conv_a"], nn.relu(x), 2, ctx)
  y, b = layers.conv_bn(params["conv_b"], stats["conv_b"], nn.relu(y), 1, ctx)
  shortcut = nn.dense(nn.avg_pool(x, 2, 2), params["shortcut"])
  return y + shortcut, {"conv_a": a, "conv_b": b}


def apply(params, batch_stats, images, genotype, config, *, train, key=None,
          drop_path_prob=0.):
  """(logits, None, new batch_stats) for NHWC float images; train=True uses
  batch statistics and moves the running averages, train=False uses them."""
  del key, drop_path_prob  # no drop-path in the NB201 protocol
  genotype = canonical(genotype)
  ctx = layers.Context(bool(train), float(config.get("bn_momentum", 0.1)), "auto",
                       jnp.asarray(0.0))
  n = config["cells_per_stage"]
  new = {"cells": [], "reductions": []}
  x, new["stem"] = layers.conv_bn(params["stem"], batch_stats["stem"], images, 1, ctx)
  for stage in range(3):
    if stage:
      x, reduction_stats = _reduction(params["reductions"][stage - 1],
                                      batch_stats["reductions"][stage - 1], x, ctx)
      new["reductions"].append(reduction_stats)
    for i in range(stage * n, (stage + 1) * n):
      x, cell_stats = _cell(params["cells"][i], batch_stats["cells"][i], x, genotype, ctx)
      new["cells"].append(cell_stats)
  x, new["last_bn"] = layers.bn(params["last_bn"], batch_stats["last_bn"], x, ctx)
  logits = nn.dense(nn.global_avg_pool(nn.relu(x)), params["classifier"]["w"],
                    params["classifier"]["b"])
  return logits, None, new
