"""Layers the evaluation networks share: affine batch norm with running
statistics and a conv followed by it, with the context they run in.

`*_init` returns (params, stats); an apply returns (output, new stats). The
key names of the returned trees ("scale", "bias", "mean", "var", "w", "bn") are
the checkpoints' parameter names.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayesnas_jax import nn
from bayesnas_jax.spaces.ops import he_normal


class Context(NamedTuple):
  """How a network runs: `train` (batch statistics, running averages move) or
  not, the BN `momentum`, the depthwise conv `impl` and the drop-path
  probability `drop_prob`."""
  train: bool
  momentum: float
  impl: str
  drop_prob: jax.Array


def bn_init(channels, dtype):
  """(params, stats) of an affine batch norm: scale 1, bias 0, mean 0, var 1."""
  return ({"scale": jnp.ones((channels,), dtype), "bias": jnp.zeros((channels,), dtype)},
          {"mean": jnp.zeros((channels,), dtype), "var": jnp.ones((channels,), dtype)})


def bn(params, stats, x, ctx):
  """Batch norm of x: in train mode by batch statistics, the running averages
  moving as r ← (1 − m)·r + m·batch (unbiased variance: PyTorch's rule); in
  eval mode by the running averages, the stats unchanged."""
  if not ctx.train:
    y = nn.batch_norm(x, params["scale"], params["bias"], mean=stats["mean"],
                      var=stats["var"])
    return y, stats
  y, (mean, var) = nn.batch_norm(x, params["scale"], params["bias"], return_stats=True)
  n = x.size // x.shape[-1]
  m = ctx.momentum
  return y, {"mean": (1 - m) * stats["mean"] + m * mean,
             "var": (1 - m) * stats["var"] + m * var * (n / max(n - 1, 1))}


def conv_bn_init(key, kernel, c_in, c_out, dtype):
  """(params, stats) of a kernel×kernel conv (He-normal, no bias) and a batch norm."""
  bn_params, bn_stats = bn_init(c_out, dtype)
  w = he_normal(key, (kernel, kernel, c_in, c_out), kernel * kernel * c_in, dtype)
  return {"w": w, "bn": bn_params}, {"bn": bn_stats}


def conv_bn(params, stats, x, stride, ctx):
  """Conv (SAME padding, `stride`), then batch norm."""
  y, bn_stats = bn(params["bn"], stats["bn"], nn.conv2d(x, params["w"], stride=stride), ctx)
  return y, {"bn": bn_stats}
