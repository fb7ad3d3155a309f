"""Custom-VJP curvature rules shared by every primitive (SPEC §5, thesis eqs. 4-9, 4-10).

Each rule is a `jax.custom_vjp` over (value, probe) pairs. In the backward pass
the value's cotangent is the gradient, computed by `jax.vjp` of the plain
function so that it equals `jax.grad` of the same loss; the probe's cotangent is
the diagonal curvature H, propagated with off-diagonal terms dropped:

* bilinear maps y = f(x, w) (dense, convolution, scaling by an architecture
  scalar):  H_x = f(·, w∘w)ᵀ H_y  and  H_w = f(x∘x, ·)ᵀ H_y — the transposed map
  built from squared coefficients, evaluated per example and position;
* element-wise non-linearities a = σ(h):  H_h = σ'(h)² H_a + σ''(h) ∂L/∂a, the
  last term only in "hessian" mode (it is what separates it from "ggn");
* piecewise-linear routings with unit coefficients (max pooling):  H is routed
  exactly like the gradient.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from bayesnas_jax.nn.ordering import after
from bayesnas_jax.nn.probe import Probed, mode_of, probe_of, value_of


# ----------------------------------------------------------------------------
# Bilinear maps.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bilinear(f, x, x_probe, w, w_probe):
  del x_probe, w_probe
  y = f(x, w)
  return y, jnp.zeros_like(y)


def _bilinear_fwd(f, x, x_probe, w, w_probe):
  return _bilinear(f, x, x_probe, w, w_probe), (x, w)


def _squared_transpose(f, x, w, curv_y):
  """H_x, H_w = f(·, w∘w)ᵀ H_y, f(x∘x, ·)ᵀ H_y, computed in float32 at least so
  that the sums over batch and positions do not lose small terms in bf16."""
  wide = jnp.promote_types(jnp.result_type(x, w, curv_y), jnp.float32)
  _, vjp = jax.vjp(f, (x * x).astype(wide), (w * w).astype(wide))
  curv_x, curv_w = vjp(curv_y.astype(wide))
  return curv_x.astype(x.dtype), curv_w.astype(w.dtype)


def _bilinear_bwd(f, residuals, cotangents):
  grad_y, curv_y = cotangents
  # Each half of the rule reads residuals tied to its own cotangent only, so a
  # caller that drops the gradients (or the curvature) lets XLA drop that half
  # whole; a residual tied to both would keep the dead half's cotangents alive,
  # recomputed inside every fusion that reads the tie (`ordering.after`).
  _, grad_vjp = jax.vjp(f, *after(residuals, grad_y))
  grad_x, grad_w = grad_vjp(grad_y)
  curv_x, curv_w = _squared_transpose(f, *after(residuals, curv_y), curv_y)
  return grad_x, curv_x, grad_w, curv_w


_bilinear.defvjp(_bilinear_fwd, _bilinear_bwd)


def bilinear(f: Callable, x, w):
  """Applies y = f(x, w), linear in x for fixed w and in w for fixed x.

  Plain inputs give a plain output through ordinary autodiff; if either input is
  probed, the output is probed and the curvature rule above applies.
  """
  mode = mode_of(x, w)
  if mode is None:
    return f(x, w)
  y, probe = _bilinear(f, value_of(x), probe_of(x), value_of(w), probe_of(w))
  return Probed(y, probe, mode)


# ----------------------------------------------------------------------------
# Element-wise non-linearities.


class Elementwise(NamedTuple):
  """σ with its first and second derivatives, each a function of h.

  For a piecewise-linear σ (relu) pass `jnp.zeros_like` as `second`: the
  σ''·∂L/∂a term is then known to vanish and is skipped, which keeps the
  curvature pass from reading the gradient there.
  """
  fn: Callable
  first: Callable
  second: Callable


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _elementwise(spec, mode, h, h_probe):
  del mode, h_probe
  a = spec.fn(h)
  return a, jnp.zeros_like(a)


def _elementwise_fwd(spec, mode, h, h_probe):
  return _elementwise(spec, mode, h, h_probe), h


def _elementwise_bwd(spec, mode, h, cotangents):
  grad_a, curv_a = cotangents
  _, grad_vjp = jax.vjp(spec.fn, after(h, grad_a))  # halves tied apart (_bilinear_bwd)
  (grad_h,) = grad_vjp(grad_a)
  h = after(h, curv_a)
  d1 = spec.first(h)
  curv_h = d1 * d1 * curv_a
  if mode == "hessian" and spec.second is not jnp.zeros_like:
    curv_h = curv_h + spec.second(h) * grad_a
  return grad_h, curv_h


_elementwise.defvjp(_elementwise_fwd, _elementwise_bwd)


def elementwise(spec: Elementwise, h):
  """Applies the non-linearity `spec` to a plain or probed tensor."""
  mode = mode_of(h)
  if mode is None:
    return spec.fn(h)
  a, probe = _elementwise(spec, mode, h.value, h.probe)
  return Probed(a, probe, mode)


# ----------------------------------------------------------------------------
# Routings: piecewise-linear maps whose active coefficients are all 1.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _routing(f, x, x_probe):
  del x_probe
  y = f(x)
  return y, jnp.zeros_like(y)


def _routing_fwd(f, x, x_probe):
  return _routing(f, x, x_probe), x


def _routing_bwd(f, x, cotangents):
  grad_y, curv_y = cotangents
  # Halves tied apart (_bilinear_bwd); when both are live XLA merges the two
  # identical forward recomputations.
  (grad_x,) = jax.vjp(f, after(x, grad_y))[1](grad_y)
  (curv_x,) = jax.vjp(f, after(x, curv_y))[1](curv_y)
  return grad_x, curv_x


_routing.defvjp(_routing_fwd, _routing_bwd)


def routing(f: Callable, x):
  """Applies f, which selects input entries with unit weight (e.g. max pool)."""
  mode = mode_of(x)
  if mode is None:
    return f(x)
  y, probe = _routing(f, x.value, x.probe)
  return Probed(y, probe, mode)
