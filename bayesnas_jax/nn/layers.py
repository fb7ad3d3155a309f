"""Parameterised primitives: dense, conv2d, scale, batch_norm, layer_norm.

Each accepts plain arrays or :class:`~bayesnas_jax.nn.probe.Probed` tensors and
returns the same kind. Curvature rules (SPEC §5):

* dense / conv2d (bilinear):  H_W = Σ_n x∘x ⋆ H_y (the weight-gradient map of
  (x², H_y)) and H_x = the input-gradient map of H_y run with W∘W;
* bias:  H_b = Σ over batch and positions of H_y;
* scale(x, a) = a·x for an architecture scalar a:  H_a = Σ x² H_y and the input
  receives a² H_y  (thesis (R) eqs. 4.22–4.24);
* normalisation: in the curvature pass a fixed affine map given by the
  statistics used, H_x = H_y · scale² / (var + eps); its gradient is exact
  (through the batch statistics when those are used).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from bayesnas_jax.nn import conv as conv_impls
from bayesnas_jax.nn.ordering import after
from bayesnas_jax.nn.probe import Probed, mode_of, structural, value_of
from bayesnas_jax.nn.rules import bilinear


def add_bias(y, b):
  """y + b broadcast over leading axes (coefficients 1: a structural map)."""
  if b is None:
    return y
  return structural(jnp.add, y, b)


def _matmul(x, w):
  return jnp.matmul(x, w)


def dense(x, w, b=None):
  """y = x W + b for x [..., in], W [in, out], b [out]."""
  if value_of(x).shape[-1] != value_of(w).shape[0]:
    raise ValueError(f"dense: input has {value_of(x).shape[-1]} features but "
                     f"w has shape {tuple(value_of(w).shape)} (expected [in, out])")
  return add_bias(bilinear(_matmul, x, w), b)


def conv2d(x, w, stride=1, dilation=1, groups=1, b=None, impl="auto"):
  """SAME-padded 2-D convolution, x NHWC and w HWIO; depthwise when
  groups == channels. `impl` picks lax, shifted multiply-adds or a masked dense
  conv ("auto": shifted for depthwise, masked dense for other grouped convs
  on CPU, lax otherwise); all agree."""
  f = functools.partial(conv_impls.conv, stride=stride, dilation=dilation,
                        groups=groups, impl=impl)
  return add_bias(bilinear(f, x, w), b)


def _multiply(x, a):
  return x * a


def scale(x, a):
  """a·x, with a an architecture scalar (0-d) or any broadcastable array."""
  return bilinear(_multiply, x, a)


# ----------------------------------------------------------------------------
# Normalisation.


def _normalize(x, mean, var, eps):
  return (x - mean) * lax.rsqrt(var + eps)


def _batch_normalize(x, axes, eps):
  mean = jnp.mean(x, axis=axes, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
  return _normalize(x, mean, var, eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _probed_normalize(axes, eps, x, x_probe, mean, var):
  del x_probe
  y = _plain_normalize(axes, eps, x, mean, var)
  return y, jnp.zeros_like(y)


def _plain_normalize(axes, eps, x, mean, var):
  if mean is None:
    return _batch_normalize(x, axes, eps)
  return _normalize(x, lax.stop_gradient(mean), lax.stop_gradient(var), eps)


def _probed_normalize_fwd(axes, eps, x, x_probe, mean, var):
  out = _probed_normalize(axes, eps, x, x_probe, mean, var)
  return out, (x, mean, var)


def _probed_normalize_bwd(axes, eps, residuals, cotangents):
  grad_y, curv_y = cotangents
  # Each half reads residuals tied to its own cotangent (see rules._bilinear_bwd).
  x, mean, var = after(residuals, grad_y)
  _, vjp = jax.vjp(lambda x_: _plain_normalize(axes, eps, x_, mean, var), x)
  (grad_x,) = vjp(grad_y)
  x, mean, var = after(residuals, curv_y)
  if var is None:
    used_var = jnp.var(x, axis=axes, keepdims=True)
  else:
    used_var = var
  curv_x = curv_y / (used_var + eps)
  if mean is None:
    return grad_x, curv_x, None, None
  return grad_x, curv_x, jnp.zeros_like(mean), jnp.zeros_like(var)


_probed_normalize.defvjp(_probed_normalize_fwd, _probed_normalize_bwd)


def normalize(x, axes, mean=None, var=None, eps=1e-5):
  """(x − mean)/sqrt(var + eps) over `axes`, with batch statistics if mean/var
  are None; statistics given are treated as constants."""
  mode = mode_of(x)
  if mode is None:
    return _plain_normalize(axes, eps, x, mean, var)
  if mean is not None:
    shape = [1 if i in axes else d for i, d in enumerate(x.shape)]
    mean = jnp.reshape(mean, shape)
    var = jnp.reshape(var, shape)
  y, probe = _probed_normalize(axes, eps, x.value, x.probe, mean, var)
  return Probed(y, probe, mode)


def moments(x, axes):
  """Mean and (biased) variance of a plain or probed tensor over `axes`."""
  x = lax.stop_gradient(value_of(x))
  return jnp.mean(x, axis=axes), jnp.var(x, axis=axes)


def batch_norm(x, scale_=None, bias=None, *, mean=None, var=None, eps=1e-5,
               return_stats=False):
  """Batch normalisation over all axes but the last (channels).

  Batch statistics are used unless `mean` and `var` (running averages) are
  given. `scale_` and `bias` ([C]) are the optional affine parameters. With
  `return_stats=True` also returns the (mean, var) used, for running averages.
  """
  axes = tuple(range(value_of(x).ndim - 1))
  if (mean is None) != (var is None):
    raise ValueError("batch_norm: give both mean and var, or neither")
  y = normalize(x, axes, mean, var, eps)
  if scale_ is not None:
    y = scale(y, scale_)
  y = add_bias(y, bias)
  if return_stats:
    stats = moments(x, axes) if mean is None else (mean, var)
    return y, stats
  return y


def layer_norm(x, scale_=None, bias=None, *, eps=1e-5):
  """Normalisation over the last axis (per example), optional affine."""
  axes = (value_of(x).ndim - 1,)
  y = normalize(x, axes, None, None, eps)
  if scale_ is not None:
    y = scale(y, scale_)
  return add_bias(y, bias)
