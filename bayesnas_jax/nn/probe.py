"""Tensors that carry a curvature probe through a forward pass.

The curvature engine (SPEC §5) differentiates the loss once with respect to the
network parameters *and* a zero "probe" attached to each of them. Every
primitive in :mod:`bayesnas_jax.nn` passes a pair (value, probe) forward; its
custom-VJP rule sends the ordinary gradient back through the value and the
diagonal curvature H back through the probe. A parameter's probe cotangent is
its curvature.

Users rarely build a :class:`Probed` by hand: `value_grad_curvature` wraps the
parameters, and the primitives return probed outputs whenever any input is
probed. With plain arrays the primitives are ordinary JAX functions.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

MODES = ("hessian", "ggn")


@jax.tree_util.register_pytree_node_class
class Probed:
  """A value with a zero probe of the same shape; `mode` is "hessian" or "ggn"."""

  __slots__ = ("value", "probe", "mode")

  def __init__(self, value, probe, mode: str):
    self.value = value
    self.probe = probe
    self.mode = mode

  def tree_flatten(self):
    return (self.value, self.probe), self.mode

  @classmethod
  def tree_unflatten(cls, mode, children):
    return cls(*children, mode)

  @property
  def shape(self):
    return self.value.shape

  @property
  def dtype(self):
    return self.value.dtype

  @property
  def ndim(self):
    return self.value.ndim

  def __repr__(self):
    return f"Probed(shape={self.shape}, dtype={self.dtype}, mode={self.mode})"

  def _no_arithmetic(self, *_):
    raise TypeError(
        "a Probed tensor only passes through bayesnas_jax.nn primitives; use "
        "nn.add, nn.scale, nn.concat, ... or nn.value_of(x) for a plain array")

  __add__ = __radd__ = __mul__ = __rmul__ = __sub__ = __rsub__ = _no_arithmetic
  __truediv__ = __matmul__ = __neg__ = _no_arithmetic

  def __getitem__(self, index):
    """Indexing and slicing select entries (a 0/1 map): x[i], x[:, 2:4], …"""
    return structural(lambda v: v[index], self)


def is_probed(x: Any) -> bool:
  return isinstance(x, Probed)


def value_of(x):
  """The plain array behind `x` (probed or not)."""
  return x.value if isinstance(x, Probed) else x


def mode_of(*xs) -> str | None:
  """The curvature mode of the first probed argument, or None if none is."""
  for x in xs:
    if isinstance(x, Probed):
      return x.mode
  return None


def as_probed(x, mode: str | None):
  """`x` with a zero probe in `mode`; unchanged if already probed or mode is
  None. (A `lax.scan` carry must be probed from the start if its step's output
  will be.)"""
  if mode is None or isinstance(x, Probed):
    return x
  return Probed(x, jnp.zeros_like(x), mode)


def probe_of(x):
  """The probe of `x`; a plain array gets a fresh zero probe."""
  return x.probe if isinstance(x, Probed) else jnp.zeros_like(x)


def structural(fn: Callable, *xs, **static):
  """Applies a map whose coefficients are all 0 or 1 (sums, concatenation,
  slicing, padding, broadcasting, sum-pooling) to values and probes alike.

  For such a map L, c² = c, so the curvature rule H_x = L_{c²}ᵀ H_y is the
  ordinary transpose that autodiff already applies to the probe.
  """
  mode = mode_of(*xs)
  if mode is None:
    return fn(*xs, **static)
  value = fn(*[value_of(x) for x in xs], **static)
  probe = fn(*[probe_of(x) for x in xs], **static)
  return Probed(value, probe, mode)
