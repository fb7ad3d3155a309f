"""Pooling and structural primitives.

avg pool: a sum pool (unit coefficients) times 1/count per output position, so
H_x = sumpoolᵀ(H_y / count²) — squared window weights. max pool routes H like
the gradient. Sums of node inputs pass H to every summand and concatenation
splits it; both are unit-coefficient maps handled by `structural`.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import lax

from bayesnas_jax.nn.layers import scale
from bayesnas_jax.nn.probe import structural, value_of
from bayesnas_jax.nn.rules import routing


def _window(window, stride):
  return (1, window, window, 1), (1, stride, stride, 1)


def _sum_pool(x, window, stride):
  dims, strides = _window(window, stride)
  return lax.reduce_window(x, 0.0, lax.add, dims, strides, "SAME")


def _max_pool(x, window, stride):
  dims, strides = _window(window, stride)
  return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides,
                           "SAME")


def avg_pool(x, window=3, stride=1):
  """SAME average pooling that counts only in-image entries (DARTS'
  count_include_pad=False); x NHWC."""
  shape = value_of(x).shape
  dtype = value_of(x).dtype
  summed = structural(functools.partial(_sum_pool, window=window, stride=stride), x)
  ones = jnp.ones((1, shape[1], shape[2], 1), dtype)
  inverse_count = 1.0 / _sum_pool(ones, window, stride)
  return scale(summed, inverse_count)


def max_pool(x, window=3, stride=1):
  """SAME max pooling (padding never wins); x NHWC."""
  return routing(functools.partial(_max_pool, window=window, stride=stride), x)


def global_avg_pool(x):
  """Mean over the spatial axes: [N, H, W, C] -> [N, C]."""
  shape = value_of(x).shape
  summed = structural(functools.partial(jnp.sum, axis=(1, 2)), x)
  return scale(summed, jnp.asarray(1.0 / (shape[1] * shape[2]), value_of(x).dtype))


def _sum_all(*xs):
  total = xs[0]
  for x in xs[1:]:
    total = total + x
  return total


def add(*xs):
  """Sum of node inputs; H reaches every summand unchanged."""
  if len(xs) == 1:
    return xs[0]
  return structural(_sum_all, *xs)


def _concat(*xs, axis):
  return jnp.concatenate(xs, axis=axis)


def concat(xs, axis=-1):
  """Concatenation (channels by default); H is split among the parts."""
  return structural(functools.partial(_concat, axis=axis), *xs)
