"""The DARTS evaluation network of a derived genotype (SPEC §4; DARTS evaluation layout).

stem → `layers` cells, reductions at layers//3 and 2·layers//3 (channels doubled
there) → global average pooling → linear classifier; an auxiliary head reads the
output of cell 2·layers//3 during training.

* stem "cifar": 3×3 conv to stem_multiplier·C, BN. Stem "imagenet" (the mobile
  setting): stem0 = 3×3 conv /2 to C/2, BN, ReLU, 3×3 conv /2 to C, BN; stem1 = ReLU,
  3×3 conv /2, BN; the first cell reads (stem0, stem1) as if after a reduction.
* cell: inputs c_{k−2}, c_{k−1} go through ReLU-1×1 conv-BN (c_{k−2} through
  FactorizedReduce when cell k−1 reduced). Node j is the sum of op(node i) over every
  genotype edge (op, i, j) — any number of inputs (BayesNAS keeps what survives
  pruning, not two per node). The output concatenates the genotype's concat nodes.
  In a reduction cell the ops reading the cell inputs have stride 2.
* ops: those of the search space (`spaces/ops.py`), with affine BN and running
  statistics: sep_conv k×k (ReLU, depthwise k×k /s, 1×1, BN, ReLU, depthwise k×k, 1×1,
  BN), dil_conv k×k (ReLU, depthwise k×k dilation 2 /s, 1×1, BN), skip_connect
  (identity, FactorizedReduce at stride 2), max/avg pool 3×3 (avg excludes padding).
  Pools carry no BN, as in the DARTS evaluation network (the search network's BN after
  pools belongs to the mixed op).
* BN: in train mode batch statistics normalise and the running averages move as
  r ← (1 − m)·r + m·batch (m = bn_momentum = 0.1, unbiased variance: PyTorch's rule);
  eval mode normalises with the running averages.
* drop-path (train mode, given a key): the output of every edge whose op is not the
  identity is zeroed per example with probability p and otherwise divided by 1 − p.
* auxiliary head (train mode only; DARTS AuxiliaryHeadCIFAR/ImageNet): ReLU, 5×5
  average pool (VALID, stride 3 for the cifar stem, 2 for imagenet), 1×1 conv 128, BN,
  ReLU, a conv to 768 over the whole pooled map (2×2 at 32² CIFAR and 224² ImageNet
  inputs, as in DARTS), BN, ReLU, linear.

`config` is a mapping (the `model` section of configs/darts_cifar10_eval.py) with
stem, channels, layers, num_classes, image_size and optionally in_channels (3),
stem_multiplier (3), auxiliary (True), depthwise_impl ("auto"), bn_momentum (0.1).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bayesnas_jax import nn
from bayesnas_jax.evaluation import layers
from bayesnas_jax.spaces.darts import reduction_layers
from bayesnas_jax.spaces.ops import OPS, he_normal

STEMS = ("cifar", "imagenet")
AUX_CHANNELS = (128, 768)
CELL_TYPES = ("normal", "reduce")


# ----------------------------------------------------------------------------
# Genotypes.


def canonical(genotype):
  """A hashable, checked form of a genotype dict (or of this form itself):
  ((kind, ((op, from, to), ...), concat), ...) for kind in (normal, reduce)."""
  if isinstance(genotype, tuple):
    return genotype
  cells = []
  for kind in CELL_TYPES:
    edges = tuple((str(op), int(s), int(t)) for op, s, t in genotype[kind])
    concat = tuple(int(n) for n in genotype[f"{kind}_concat"])
    check_cell(kind, edges, concat)
    cells.append((kind, edges, concat))
  return tuple(cells)


def check_cell(kind, edges, concat):
  """Raises a one-line ValueError unless the cell is a well-formed DAG."""
  nodes = {t for _, _, t in edges}
  for op, source, target in edges:
    if op not in OPS:
      raise ValueError(f"genotype {kind}: unknown op {op!r} (expected one of {list(OPS)})")
    if not 0 <= source < target or target < 2:
      raise ValueError(f"genotype {kind}: bad edge {(op, source, target)!r} (need "
                       "0 <= from < to and to >= 2)")
    if source >= 2 and source not in nodes:
      raise ValueError(f"genotype {kind}: edge {(op, source, target)!r} reads node "
                       f"{source}, which has no inputs")
  if not concat or any(n not in nodes for n in concat):
    raise ValueError(f"genotype {kind}_concat: {list(concat)} must name nodes that have "
                     f"inputs ({sorted(nodes)})")


def _cells(genotype):
  return {kind: (edges, concat) for kind, edges, concat in canonical(genotype)}


def cell_plan(config):
  """Per cell: (reduction, channels C of its nodes)."""
  plan, channels = [], config["channels"]
  reductions = reduction_layers(config["layers"])
  for layer in range(config["layers"]):
    reduction = layer in reductions
    channels *= 2 if reduction else 1
    plan.append((reduction, channels))
  return plan


def auxiliary_layer(config):
  return 2 * config["layers"] // 3


def _aux_geometry(config):
  """(pool window, pool stride, pooled size) of the auxiliary head."""
  size = config["image_size"]
  halvings = 3 if config["stem"] == "imagenet" else 0
  halvings += sum(1 for layer in reduction_layers(config["layers"])
                  if layer <= auxiliary_layer(config))
  for _ in range(halvings):
    size = -(-size // 2)
  window = min(5, size)
  stride = 2 if config["stem"] == "imagenet" else 3
  return window, stride, (size - window) // stride + 1


# ----------------------------------------------------------------------------
# Layers: init returns (params, stats); apply returns (output, new stats)
# (batch norm and conv-BN in `layers`).


def _factorized_reduce_init(key, c_in, c_out, dtype):
  k1, k2 = jax.random.split(key)
  half = c_out // 2
  bn_params, bn_stats = layers.bn_init(c_out, dtype)
  return ({"w1": he_normal(k1, (c_in, half), c_in, dtype),
           "w2": he_normal(k2, (c_in, c_out - half), c_in, dtype), "bn": bn_params},
          {"bn": bn_stats})


def _factorized_reduce(params, stats, x, ctx):
  """ReLU, 1×1 convs /2 on the even and the odd grid, concat, BN."""
  x = nn.relu(x)
  odd = jnp.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)))
  y = nn.concat([nn.dense(x[:, ::2, ::2], params["w1"]),
                 nn.dense(odd[:, 1::2, 1::2], params["w2"])])
  y, bn_stats = layers.bn(params["bn"], stats["bn"], y, ctx)
  return y, {"bn": bn_stats}


def _depthwise(x, w, stride, dilation, ctx):
  return nn.conv2d(x, w, stride=stride, dilation=dilation, groups=x.shape[-1],
                   impl=ctx.impl)


def _kernel_size(op):
  return int(op.rsplit("x", 1)[-1])


def op_init(key, op, channels, stride, dtype=jnp.float32):
  """(params, stats) of one edge's op at `channels` channels."""
  c = channels
  if op.startswith("sep_conv"):
    k = _kernel_size(op)
    keys = jax.random.split(key, 4)
    (bn1, s1), (bn2, s2) = layers.bn_init(c, dtype), layers.bn_init(c, dtype)
    return ({"dw1": he_normal(keys[0], (k, k, 1, c), k * k, dtype),
             "pw1": he_normal(keys[1], (c, c), c, dtype), "bn1": bn1,
             "dw2": he_normal(keys[2], (k, k, 1, c), k * k, dtype),
             "pw2": he_normal(keys[3], (c, c), c, dtype), "bn2": bn2},
            {"bn1": s1, "bn2": s2})
  if op.startswith("dil_conv"):
    k = _kernel_size(op)
    keys = jax.random.split(key, 2)
    bn, s = layers.bn_init(c, dtype)
    return ({"dw": he_normal(keys[0], (k, k, 1, c), k * k, dtype),
             "pw": he_normal(keys[1], (c, c), c, dtype), "bn": bn}, {"bn": s})
  if op == "skip_connect" and stride == 2:
    return _factorized_reduce_init(key, c, c, dtype)
  return {}, {}


def op_apply(op, params, stats, x, stride, ctx):
  if op.startswith("sep_conv"):
    y = _depthwise(nn.relu(x), params["dw1"], stride, 1, ctx)
    y, s1 = layers.bn(params["bn1"], stats["bn1"], nn.dense(y, params["pw1"]), ctx)
    y = _depthwise(nn.relu(y), params["dw2"], 1, 1, ctx)
    y, s2 = layers.bn(params["bn2"], stats["bn2"], nn.dense(y, params["pw2"]), ctx)
    return y, {"bn1": s1, "bn2": s2}
  if op.startswith("dil_conv"):
    y = _depthwise(nn.relu(x), params["dw"], stride, 2, ctx)
    y, s = layers.bn(params["bn"], stats["bn"], nn.dense(y, params["pw"]), ctx)
    return y, {"bn": s}
  if op == "skip_connect":
    return (x, stats) if stride == 1 else _factorized_reduce(params, stats, x, ctx)
  pool = nn.max_pool if op.startswith("max_pool") else nn.avg_pool
  return pool(x, 3, stride), stats


def drop_path(x, key, prob):
  """Zeroes each example with probability `prob`, scales the rest by 1/(1 − prob)."""
  keep = jnp.asarray(1.0, x.dtype) - prob.astype(x.dtype)
  alive = jax.random.uniform(key, (x.shape[0],) + (1,) * (x.ndim - 1)) < keep
  return jnp.where(alive, x / keep, jnp.zeros((), x.dtype))


# ----------------------------------------------------------------------------
# Cells and the auxiliary head.


def _edge_stride(reduction, source):
  return 2 if reduction and source < 2 else 1


def _cell_init(key, cell, c_prev_prev, c_prev, channels, reduction, reduction_prev, dtype):
  edges, _ = cell
  keys = jax.random.split(key, len(edges) + 2)
  pre0 = (_factorized_reduce_init(keys[0], c_prev_prev, channels, dtype) if reduction_prev
          else layers.conv_bn_init(keys[0], 1, c_prev_prev, channels, dtype))
  pre1 = layers.conv_bn_init(keys[1], 1, c_prev, channels, dtype)
  ops = [op_init(k, op, channels, _edge_stride(reduction, source), dtype)
         for k, (op, source, _) in zip(keys[2:], edges)]
  return ({"pre0": pre0[0], "pre1": pre1[0], "edges": [p for p, _ in ops]},
          {"pre0": pre0[1], "pre1": pre1[1], "edges": [s for _, s in ops]})


def _cell(params, stats, s0, s1, cell, reduction, ctx, key):
  edges, concat = cell
  pre0 = _factorized_reduce if "w1" in params["pre0"] else (
      lambda p, s, x, c: layers.conv_bn(p, s, nn.relu(x), 1, c))
  x0, pre0_stats = pre0(params["pre0"], stats["pre0"], s0, ctx)
  x1, pre1_stats = layers.conv_bn(params["pre1"], stats["pre1"], nn.relu(s1), 1, ctx)
  states = {0: x0, 1: x1}
  edge_stats = list(stats["edges"])
  for node in sorted({t for _, _, t in edges}):
    terms = []
    for e, (op, source, target) in enumerate(edges):
      if target != node:
        continue
      stride = _edge_stride(reduction, source)
      y, edge_stats[e] = op_apply(op, params["edges"][e], stats["edges"][e],
                                  states[source], stride, ctx)
      if key is not None and not (op == "skip_connect" and stride == 1):
        y = drop_path(y, jax.random.fold_in(key, e), ctx.drop_prob)
      terms.append(y)
    states[node] = nn.add(*terms)
  out = nn.concat([states[n] for n in concat])
  return out, {"pre0": pre0_stats, "pre1": pre1_stats, "edges": edge_stats}


def _aux_init(key, c_in, num_classes, pooled, dtype):
  k1, k2, k3 = jax.random.split(key, 3)
  hidden, features = AUX_CHANNELS
  conv1 = layers.conv_bn_init(k1, 1, c_in, hidden, dtype)
  conv2 = layers.conv_bn_init(k2, pooled, hidden, features, dtype)
  classifier = {"w": jax.random.normal(k3, (features, num_classes), dtype)
                     / math.sqrt(features), "b": jnp.zeros((num_classes,), dtype)}
  return ({"conv1": conv1[0], "conv2": conv2[0], "classifier": classifier},
          {"conv1": conv1[1], "conv2": conv2[1]})


def _aux(params, stats, x, window, stride, ctx):
  x = nn.relu(x)
  x = lax.reduce_window(x, np.zeros((), x.dtype), lax.add, (1, window, window, 1),
                        (1, stride, stride, 1), "VALID") / (window * window)
  x, conv1 = layers.conv_bn(params["conv1"], stats["conv1"], x, 1, ctx)
  # The second conv covers the whole pooled map (VALID): a dense map of the
  # flattened map, giving one 768-vector per example.
  w = params["conv2"]["w"]
  x = nn.dense(nn.relu(x).reshape(x.shape[0], -1), w.reshape(-1, w.shape[-1]))
  x, bn = layers.bn(params["conv2"]["bn"], stats["conv2"]["bn"], x, ctx)
  logits = nn.dense(nn.relu(x), params["classifier"]["w"], params["classifier"]["b"])
  return logits, {"conv1": conv1, "conv2": {"bn": bn}}


# ----------------------------------------------------------------------------
# The network.


def init(key, genotype, config, dtype=jnp.float32):
  """(params, batch_stats) of the evaluation network of `genotype`."""
  cells = _cells(genotype)
  if config["stem"] not in STEMS:
    raise ValueError(f"config.model.stem: expected one of {STEMS}, got {config['stem']!r}")
  plan = cell_plan(config)
  keys = jax.random.split(key, len(plan) + 3)
  c, in_channels = config["channels"], config.get("in_channels", 3)
  params, stats = {}, {}
  if config["stem"] == "cifar":
    c_stem = config.get("stem_multiplier", 3) * c
    params["stem"], stats["stem"] = layers.conv_bn_init(keys[0], 3, in_channels, c_stem, dtype)
    c_prev_prev = c_prev = c_stem
    reduction_prev = False
  else:
    k1, k2, k3 = jax.random.split(keys[0], 3)
    conv1 = layers.conv_bn_init(k1, 3, in_channels, c // 2, dtype)
    conv2 = layers.conv_bn_init(k2, 3, c // 2, c, dtype)
    params["stem0"] = {"conv1": conv1[0], "conv2": conv2[0]}
    stats["stem0"] = {"conv1": conv1[1], "conv2": conv2[1]}
    params["stem1"], stats["stem1"] = layers.conv_bn_init(k3, 3, c, c, dtype)
    c_prev_prev = c_prev = c
    reduction_prev = True
  params["cells"], stats["cells"] = [], []
  c_aux = None
  for i, (reduction, channels) in enumerate(plan):
    cell = cells["reduce" if reduction else "normal"]
    p, s = _cell_init(keys[i + 1], cell, c_prev_prev, c_prev, channels, reduction,
                      reduction_prev, dtype)
    params["cells"].append(p)
    stats["cells"].append(s)
    c_prev_prev, c_prev, reduction_prev = c_prev, len(cell[1]) * channels, reduction
    if i == auxiliary_layer(config):
      c_aux = c_prev
  if config.get("auxiliary", True) and c_aux is not None:
    params["auxiliary"], stats["auxiliary"] = _aux_init(
        keys[-2], c_aux, config["num_classes"], _aux_geometry(config)[2], dtype)
  params["classifier"] = {
      "w": jax.random.normal(keys[-1], (c_prev, config["num_classes"]), dtype)
           / math.sqrt(c_prev),
      "b": jnp.zeros((config["num_classes"],), dtype)}
  return params, stats


def apply(params, batch_stats, images, genotype, config, *, train, key=None,
          drop_path_prob=0.):
  """(logits, aux_logits or None, new batch_stats) for NHWC float images.

  train=True: batch statistics (running averages updated in the returned stats),
  drop-path on non-identity edges when `key` is given, auxiliary logits when the
  network has the head. train=False: running statistics, no drop-path, no aux
  logits; the stats come back unchanged.
  """
  cells = _cells(genotype)
  ctx = layers.Context(bool(train), float(config.get("bn_momentum", 0.1)),
                       config.get("depthwise_impl", "auto"), jnp.asarray(drop_path_prob))
  key = key if train else None
  new = dict(batch_stats)
  if "stem" in params:
    s0, new["stem"] = layers.conv_bn(params["stem"], batch_stats["stem"], images, 1, ctx)
    s1 = s0
  else:
    p0, b0 = params["stem0"], batch_stats["stem0"]
    x, conv1 = layers.conv_bn(p0["conv1"], b0["conv1"], images, 2, ctx)
    s0, conv2 = layers.conv_bn(p0["conv2"], b0["conv2"], nn.relu(x), 2, ctx)
    new["stem0"] = {"conv1": conv1, "conv2": conv2}
    s1, new["stem1"] = layers.conv_bn(params["stem1"], batch_stats["stem1"], nn.relu(s0), 2, ctx)
  aux_logits = None
  new["cells"] = []
  for i, (reduction, _) in enumerate(cell_plan(config)):
    cell_key = None if key is None else jax.random.fold_in(key, i)
    out, cell_stats = _cell(params["cells"][i], batch_stats["cells"][i], s0, s1,
                            cells["reduce" if reduction else "normal"], reduction, ctx,
                            cell_key)
    new["cells"].append(cell_stats)
    s0, s1 = s1, out
    if train and i == auxiliary_layer(config) and "auxiliary" in params:
      window, stride, _ = _aux_geometry(config)
      aux_logits, new["auxiliary"] = _aux(params["auxiliary"], batch_stats["auxiliary"],
                                          s1, window, stride, ctx)
  logits = nn.dense(nn.global_avg_pool(s1), params["classifier"]["w"],
                    params["classifier"]["b"])
  return logits, aux_logits, new
