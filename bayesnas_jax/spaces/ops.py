"""Candidate operations of the DARTS CNN space (SPEC §4; Liu et al. 2019).

Each op is a pair of pure functions: `shapes(channels, stride)` gives one
edge's weights as {name: (shape, fan_in)} (He-normal; pools have none; see
`init_edges`) and `apply(weights, x, stride, config)` runs the op for E edges
at once. Edges that share a source node run
together in a channel-folded layout: x is [N, H, W, E·C] and weights are
stacked with a leading edge axis. Depthwise convolutions, pools and batch norm
act per channel, so folding is exact; 1×1 convolutions are one batched matmul
over the edge axis. This keeps one kernel per (source, op) — fast on
CPU and GPU, and one instance to compile.

There is no `zero` op: BayesNAS removes an edge through its origin scalar
("zero op ruling all", §4.2). Batch norm in the search network has no affine
parameters.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import nn


class Op(NamedTuple):
  shapes: Callable
  apply: Callable


def he_normal(key, shape, fan_in, dtype):
  return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / fan_in)


def init_classifier(rng, width, num_classes, dtype):
  """A linear classifier drawn on the host: w ~ N(0, 1/width), b = 0."""
  return {"w": jnp.asarray(rng.standard_normal((width, num_classes)) / math.sqrt(width), dtype),
          "b": jnp.zeros((num_classes,), dtype)}


def numpy_rng(key):
  """A NumPy generator seeded by a (concrete) JAX PRNG key or an int.

  The supernet's weights are drawn on the host: a few hundred He-normal
  leaves drawn by `jax.random` cost about a minute of per-shape compiles and
  dispatches for the 8-cell network, NumPy draws them in milliseconds."""
  if isinstance(key, int):
    return np.random.default_rng(key)
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.random.default_rng(np.asarray(key, np.uint32).ravel().tolist())


def init_edges(rng, shapes, edges, dtype):
  """He-normal weights of `shapes` ({name: (shape, fan_in)}) for E edges,
  stacked along a leading edge axis, from the NumPy generator `rng`."""
  return {name: jnp.asarray(rng.standard_normal((edges,) + tuple(shape))
                            * math.sqrt(2.0 / fan_in), dtype)
          for name, (shape, fan_in) in sorted(shapes.items())}


def _edges(weights_leaf):
  return nn.value_of(weights_leaf).shape[0]


def folded_depthwise(w):
  """[E, k, k, 1, C] → the [k, k, 1, E·C] depthwise kernel."""
  def build(v):
    e, kh, kw, _, c = v.shape
    return jnp.transpose(v, (1, 2, 3, 0, 4)).reshape(kh, kw, 1, e * c)
  return nn.structural(build, w)


def _edgewise_matmul(x, w):
  """x [..., E·C] times w [E, C, D] per edge block → [..., E·D].

  One batched matmul with the edge axis leading: E× fewer multiply-adds than
  the [E·C, E·D] block-diagonal kernel, and faster than an einsum that keeps
  the edge axis in the middle (XLA CPU, measured in BENCHMARKS.md)."""
  edges, c, d = w.shape
  lead = x.shape[:-1]
  rows = jnp.moveaxis(x.reshape((-1, edges, c)), 1, 0)
  y = jnp.matmul(rows, w)
  return jnp.moveaxis(y, 0, 1).reshape(lead + (edges * d,))


def pointwise(x, w):
  """1×1 convolutions of E folded edges: w [E, C, D], x [..., E·C]."""
  edges, c, _ = nn.value_of(w).shape
  if nn.value_of(x).shape[-1] != edges * c:
    raise ValueError(f"pointwise: input has {nn.value_of(x).shape[-1]} channels, "
                     f"expected {edges} edges × {c}")
  return nn.bilinear(_edgewise_matmul, x, w)


def depthwise(x, w, stride=1, dilation=1, impl="auto"):
  kernel = folded_depthwise(w)
  return nn.conv2d(x, kernel, stride=stride, dilation=dilation,
                   groups=nn.value_of(kernel).shape[-1], impl=impl)


def strided_corner(x, offset):
  """x[:, offset::2, offset::2, :] (a structural map)."""
  return nn.structural(lambda v: v[:, offset::2, offset::2, :], x)


def interleave_halves(a, b, edges):
  """Per edge, channels of a then of b: [.., E·Ca], [.., E·Cb] → [.., E·(Ca+Cb)]."""
  def build(u, v):
    lead = u.shape[:-1]
    u = u.reshape(lead + (edges, -1))
    v = v.reshape(lead + (edges, -1))
    return jnp.concatenate([u, v], -1).reshape(lead + (-1,))
  return nn.structural(build, a, b)


def factorized_reduce_shapes(c_in, c_out):
  half = c_out // 2
  return {"w1": ((c_in, half), c_in), "w2": ((c_in, c_out - half), c_in)}


def factorized_reduce(weights, x):
  """ReLU, two 1×1 stride-2 convs on offset grids, concat, BN (DARTS), for
  weights stacked over E edges ([E, C, ·])."""
  x = nn.relu(x)
  a = pointwise(strided_corner(x, 0), weights["w1"])
  b = pointwise(strided_corner(x, 1), weights["w2"])
  return nn.batch_norm(interleave_halves(a, b, _edges(weights["w1"])))


def _sep_conv(k):
  def shapes(channels, stride):
    del stride
    return {"dw1": ((k, k, 1, channels), k * k), "pw1": ((channels, channels), channels),
            "dw2": ((k, k, 1, channels), k * k), "pw2": ((channels, channels), channels)}

  def apply(weights, x, stride, config):
    impl = config.get("depthwise_impl", "auto")
    x = depthwise(nn.relu(x), weights["dw1"], stride, impl=impl)
    x = nn.relu(nn.batch_norm(pointwise(x, weights["pw1"])))
    x = depthwise(x, weights["dw2"], impl=impl)
    return nn.batch_norm(pointwise(x, weights["pw2"]))

  return Op(shapes, apply)


def _dil_conv(k):
  def shapes(channels, stride):
    del stride
    return {"dw": ((k, k, 1, channels), k * k), "pw": ((channels, channels), channels)}

  def apply(weights, x, stride, config):
    impl = config.get("depthwise_impl", "auto")
    x = depthwise(nn.relu(x), weights["dw"], stride, dilation=2, impl=impl)
    return nn.batch_norm(pointwise(x, weights["pw"]))

  return Op(shapes, apply)


def _pool(pool_fn):
  def shapes(channels, stride):
    del channels, stride
    return {}

  def apply(weights, x, stride, config):
    del weights, config
    return nn.batch_norm(pool_fn(x, 3, stride))

  return Op(shapes, apply)


def _skip_shapes(channels, stride):
  return {} if stride == 1 else factorized_reduce_shapes(channels, channels)


def _skip_apply(weights, x, stride, config):
  del config
  return x if stride == 1 else factorized_reduce(weights, x)


OPS = {
    "skip_connect": Op(_skip_shapes, _skip_apply),
    "sep_conv_3x3": _sep_conv(3),
    "sep_conv_5x5": _sep_conv(5),
    "dil_conv_3x3": _dil_conv(3),
    "dil_conv_5x5": _dil_conv(5),
    "max_pool_3x3": _pool(nn.max_pool),
    "avg_pool_3x3": _pool(nn.avg_pool),
}
DARTS_OPS = tuple(OPS)


def check_ops(names):
  unknown = [n for n in names if n not in OPS]
  if unknown or not names or len(set(names)) != len(names):
    raise ValueError(f"config.space.ops: expected a non-empty list of distinct ops from "
                     f"{list(OPS)}, got {list(names)}")
