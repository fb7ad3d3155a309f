"""Pooling and structural primitives.

avg pool: a sum pool (unit coefficients) times 1/count per output position, so
H_x = sumpoolᵀ(H_y / count²) — squared window weights. max pool routes H like
the gradient. Sums of node inputs pass H to every summand and concatenation
splits it; both are unit-coefficient maps handled by `structural`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from bayesnas_jax.nn.conv import same_pads
from bayesnas_jax.nn.layers import scale
from bayesnas_jax.nn.ordering import after
from bayesnas_jax.nn.probe import structural, value_of
from bayesnas_jax.nn.rules import routing


def _pool_geometry(shape, window, stride):
  pads = same_pads(shape[1:3], (window, window), stride, 1)
  out_hw = (-(-shape[1] // stride), -(-shape[2] // stride))
  span = ((out_hw[0] - 1) * stride + 1, (out_hw[1] - 1) * stride + 1)
  return pads, span


def _pool_taps(x, window, stride, fill):
  """The window's entries for every output position, tap by tap in row-major
  window order: strided slices of x padded with `fill`."""
  n, _, _, channels = x.shape
  pads, span = _pool_geometry(x.shape, window, stride)
  xp = lax.pad(x, jnp.asarray(fill, x.dtype),
               ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
  for i in range(window):
    for j in range(window):
      yield lax.slice(xp, (0, i, j, 0), (n, i + span[0], j + span[1], channels),
                      (1, stride, stride, 1))


def _spread_and_pad(g, x_shape, window, stride, fill):
  """g at input resolution (o·stride), padded so that the input position p of
  tap (i, j) reads index p + (window − 1 − i, window − 1 − j)."""
  pads, span = _pool_geometry(x_shape, window, stride)
  reach = window - 1
  height, width = x_shape[1:3]
  cfg = ((0, 0, 0), (reach - pads[0][0], height + pads[0][0] - span[0], stride - 1),
         (reach - pads[1][0], width + pads[1][0] - span[1], stride - 1), (0, 0, 0))
  return lax.pad(g, jnp.asarray(fill, g.dtype), cfg)


def _flipped_taps(gp, x_shape, window):
  """(tap index, slice of gp at input resolution) for every tap (i, j)."""
  n, height, width, channels = x_shape
  reach = window - 1
  for i in range(window):
    for j in range(window):
      start = (0, reach - i, reach - j, 0)
      yield i * window + j, lax.slice(gp, start, (n, start[1] + height,
                                                  start[2] + width, channels))


def _shifted_sum(x, window, stride):
  y = None
  for tap in _pool_taps(x, window, stride, 0):
    y = tap if y is None else y + tap
  return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _sum_pool(x, window, stride):
  """SAME sum pooling (zero padding) as a sum of shifted slices; its transpose
  spreads and pads the cotangent once and sums shifted slices of it."""
  return _shifted_sum(x, window, stride)


def _sum_pool_fwd(x, window, stride):
  return _shifted_sum(x, window, stride), x.shape


def _sum_pool_bwd(window, stride, x_shape, g):
  total = None
  for _, tap in _flipped_taps(_spread_and_pad(g, x_shape, window, stride, 0),
                              x_shape, window):
    total = tap if total is None else total + tap
  return (total,)


_sum_pool.defvjp(_sum_pool_fwd, _sum_pool_bwd)


def _running_max(x, window, stride):
  y = None
  for tap in _pool_taps(x, window, stride, -jnp.inf):
    y = tap if y is None else lax.max(y, tap)
  return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool(x, window, stride):
  return _running_max(x, window, stride)


def _max_pool_fwd(x, window, stride):
  return _running_max(x, window, stride), x


def _max_pool_bwd(window, stride, x, g):
  """Routes g to the first maximum of each window (row-major order), as XLA's
  select-and-scatter does, but with shifted selects instead of a scatter."""
  x = after(x, g)
  index = jnp.int8 if window * window <= 127 else jnp.int32
  best = choice = None
  for t, tap in enumerate(_pool_taps(x, window, stride, -jnp.inf)):
    if best is None:
      best, choice = tap, jnp.zeros(tap.shape, index)
    else:
      better = tap > best
      best = jnp.where(better, tap, best)
      choice = jnp.where(better, index(t), choice)
  # Tap t of output o reads input o·stride + (i, j) − pad_low: spread g and the
  # chosen taps to input resolution, pad each once, and read them back per tap.
  gp = _flipped_taps(_spread_and_pad(g, x.shape, window, stride, 0), x.shape, window)
  cp = _flipped_taps(_spread_and_pad(choice, x.shape, window, stride, -1), x.shape,
                     window)
  total = None
  zero = jnp.zeros((), g.dtype)
  for (t, g_tap), (_, chosen) in zip(gp, cp):
    term = jnp.where(chosen == t, g_tap, zero)
    total = term if total is None else total + term
  return (total,)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


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
  """SAME max pooling (padding never wins); x NHWC.

  Computed as a running maximum of shifted slices, with a written-out
  reverse-mode rule (the gradient goes to the first maximum of each window in
  row-major order, like `lax.reduce_window`'s): XLA's select-and-scatter on CPU
  builds a full index array and a scatter per pooling layer. Pure forward mode
  (`jax.jvp` of the pool itself) is not supported.
  """
  return routing(functools.partial(_max_pool, window=int(window), stride=int(stride)), x)


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
