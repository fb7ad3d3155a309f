"""Convolution implementations: every path gives the same numbers.

XLA's grouped (depthwise) convolution is slow on CPU, so depthwise convolutions
default to k×k shifted multiply-adds; a masked dense convolution is the third
choice. All are bilinear in (x, w), which is all the curvature rule needs.
Inputs are NHWC, kernels HWIO, padding "SAME" as in `jax.lax`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "lax", "shifted", "masked_dense")
_DIMS = ("NHWC", "HWIO", "NHWC")


def same_pads(size_hw, kernel_hw, stride, dilation):
  """The (low, high) paddings of `lax`'s SAME convention for each spatial dim."""
  effective = [(k - 1) * dilation + 1 for k in kernel_hw]
  return lax.padtype_to_pads(size_hw, effective, (stride, stride), "SAME")


def conv_lax(x, w, stride=1, dilation=1, groups=1):
  return lax.conv_general_dilated(
      x, w, window_strides=(stride, stride), padding="SAME",
      rhs_dilation=(dilation, dilation), dimension_numbers=_DIMS,
      feature_group_count=groups)


def depthwise_shifted(x, w, stride=1, dilation=1):
  """Depthwise conv (w: [kh, kw, 1, C]) as a sum of kh·kw shifted products."""
  n, height, width, channels = x.shape
  kh, kw = w.shape[:2]
  pads = same_pads((height, width), (kh, kw), stride, dilation)
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  out_h = -(-height // stride)
  out_w = -(-width // stride)
  y = None
  for i in range(kh):
    for j in range(kw):
      start = (0, i * dilation, j * dilation, 0)
      limit = (n, start[1] + (out_h - 1) * stride + 1,
               start[2] + (out_w - 1) * stride + 1, channels)
      term = lax.slice(xp, start, limit, (1, stride, stride, 1)) * w[i, j, 0]
      y = term if y is None else y + term
  return y


def expand_grouped_kernel(w, in_channels, groups):
  """The dense HWIO kernel equal to a grouped one (zeros off the groups)."""
  kh, kw, per_group_in, out_channels = w.shape
  per_group_out = out_channels // groups
  in_group = jnp.arange(in_channels) // per_group_in
  out_group = jnp.arange(out_channels) // per_group_out
  mask = (in_group[:, None] == out_group[None, :]).astype(w.dtype)
  # Entry (i, o) of the dense kernel takes w[..., i mod per_group_in, o].
  tiled = jnp.tile(w, (1, 1, groups, 1))
  return tiled * mask


def conv_masked_dense(x, w, stride=1, dilation=1, groups=1):
  dense = expand_grouped_kernel(w, x.shape[-1], groups)
  return conv_lax(x, dense, stride, dilation, 1)


def resolve_impl(impl, in_channels, groups, w_shape):
  """The implementation `impl="auto"` stands for, given the layer's shape."""
  if impl not in IMPLS:
    raise ValueError(f"conv impl: expected one of {IMPLS}, got {impl!r}")
  depthwise = groups == in_channels and groups > 1 and w_shape[-1] == groups
  if impl == "auto":
    return "shifted" if depthwise else "lax"
  if impl == "shifted" and not depthwise:
    return "lax"
  return impl


def conv(x, w, stride=1, dilation=1, groups=1, impl="auto"):
  """Plain (unprobed) convolution by the chosen implementation."""
  in_channels = x.shape[-1]
  if in_channels % groups or w.shape[-1] % groups or w.shape[2] * groups != in_channels:
    raise ValueError(
        f"conv2d: kernel {tuple(w.shape)} with groups={groups} does not fit "
        f"{in_channels} input channels (expected kernel [kh, kw, "
        f"{in_channels // max(groups, 1)}, multiple of {groups}])")
  impl = resolve_impl(impl, in_channels, groups, w.shape)
  if impl == "shifted":
    return depthwise_shifted(x, w, stride, dilation)
  if impl == "masked_dense" and groups > 1:
    return conv_masked_dense(x, w, stride, dilation, groups)
  return conv_lax(x, w, stride, dilation, groups)
