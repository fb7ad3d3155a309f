"""Convolution implementations: every path gives the same numbers.

XLA's grouped (depthwise) convolution is slow on CPU, so depthwise convolutions
default to k×k shifted multiply-adds; a masked dense convolution is the third
choice. All are bilinear in (x, w), which is all the curvature rule needs.
Inputs are NHWC, kernels HWIO, padding "SAME" as in `jax.lax`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from bayesnas_jax.nn.ordering import after

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


def _shifted_geometry(x_shape, w_shape, stride, dilation):
  """SAME pads, output size and the input span one output row/column covers."""
  height, width = x_shape[1:3]
  pads = same_pads((height, width), w_shape[:2], stride, dilation)
  out_h = -(-height // stride)
  out_w = -(-width // stride)
  return pads, (out_h, out_w), ((out_h - 1) * stride + 1, (out_w - 1) * stride + 1)


def _tap_offsets(w_shape, pads, dilation):
  """For each tap (i, j): the input offset of output (0, 0) (may be negative)."""
  kh, kw = w_shape[:2]
  return [(i, j, i * dilation - pads[0][0], j * dilation - pads[1][0])
          for i in range(kh) for j in range(kw)]


def _shifted_forward(x, w, stride, dilation):
  n, _, _, channels = x.shape
  pads, _, span = _shifted_geometry(x.shape, w.shape, stride, dilation)
  zero = jnp.zeros((), x.dtype)
  y = None
  if stride == 1:
    # Each tap moves x·w_ij into the output frame with one (possibly
    # negative) pad; XLA fuses all taps into one loop without a padded copy.
    for i, j, off_h, off_w in _tap_offsets(w.shape, pads, dilation):
      cfg = ((0, 0, 0), (-off_h, off_h, 0), (-off_w, off_w, 0), (0, 0, 0))
      term = lax.pad(x * w[i, j, 0], zero, cfg)
      y = term if y is None else y + term
    return y
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  for i, j, _, _ in _tap_offsets(w.shape, pads, dilation):
    start = (0, i * dilation, j * dilation, 0)
    limit = (n, start[1] + span[0], start[2] + span[1], channels)
    term = lax.slice(xp, start, limit, (1, stride, stride, 1)) * w[i, j, 0]
    y = term if y is None else y + term
  return y


def _shifted_input_transpose(w, g, x_shape, stride, dilation):
  """∂/∂x of <g, depthwise(x, w)>: a stride-1 correlation of the cotangent,
  spread to input resolution (interior padding undoes the stride) and padded
  once, with the flipped kernel. The single padded copy keeps XLA from
  materialising one padded map per tap when it fuses the sums of cotangents
  that meet at a node."""
  n, height, width, channels = x_shape
  kh, kw = w.shape[:2]
  pads, _, span = _shifted_geometry(x_shape, w.shape, stride, dilation)
  reach_h, reach_w = (kh - 1) * dilation, (kw - 1) * dilation
  low_h, low_w = reach_h - pads[0][0], reach_w - pads[1][0]
  cfg = ((0, 0, 0), (low_h, height + pads[0][0] - span[0], stride - 1),
         (low_w, width + pads[1][0] - span[1], stride - 1), (0, 0, 0))
  gp = lax.pad(g, jnp.zeros((), g.dtype), cfg)  # [n, height + reach_h, ...]
  total = None
  for i in range(kh):
    for j in range(kw):
      top, left = (kh - 1 - i) * dilation, (kw - 1 - j) * dilation
      window = lax.slice(gp, (0, top, left, 0), (n, top + height, left + width, channels))
      term = window * w[i, j, 0]
      total = term if total is None else total + term
  return total


def _shifted_weight_transpose(x, g, w_shape, stride, dilation):
  """∂/∂w of <g, depthwise(x, w)>: per tap, Σ over batch and positions of the
  tap's input window times g."""
  n, _, _, channels = x.shape
  pads, _, span = _shifted_geometry(x.shape, w_shape, stride, dilation)
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  padded_h, padded_w = xp.shape[1:3]
  zero = jnp.zeros((), g.dtype)
  rows = []
  for i, j, _, _ in _tap_offsets(w_shape, pads, dilation):
    top, left = i * dilation, j * dilation
    if stride == 1:
      # Pad g into the padded frame rather than slicing xp: on CPU the
      # pad, product and reduction then fuse into one pass with no copies.
      cfg = ((0, 0, 0), (top, padded_h - top - span[0], 0),
             (left, padded_w - left - span[1], 0), (0, 0, 0))
      rows.append(jnp.sum(xp * lax.pad(g, zero, cfg), axis=(0, 1, 2)))
    else:
      window = lax.slice(xp, (0, top, left, 0),
                         (n, top + span[0], left + span[1], channels),
                         (1, stride, stride, 1))
      rows.append(jnp.sum(window * g, axis=(0, 1, 2)))
  return jnp.stack(rows).reshape(w_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise_shifted(x, w, stride, dilation):
  return _shifted_forward(x, w, stride, dilation)


def _depthwise_shifted_fwd(x, w, stride, dilation):
  return _shifted_forward(x, w, stride, dilation), (x, w)


def _depthwise_shifted_bwd(stride, dilation, residuals, g):
  # Tied to g so that XLA builds the padded copy of x in the backward pass.
  x, w = after(residuals, g)
  return (_shifted_input_transpose(w, g, x.shape, stride, dilation),
          _shifted_weight_transpose(x, g, w.shape, stride, dilation))


_depthwise_shifted.defvjp(_depthwise_shifted_fwd, _depthwise_shifted_bwd)


def depthwise_shifted(x, w, stride=1, dilation=1):
  """Depthwise conv (w: [kh, kw, 1, C]) as a sum of kh·kw shifted products.

  Its reverse-mode rule is written out (residuals x and w only; the input
  gradient is a shifted multiply-add of the cotangent, the kernel gradient one
  fused reduction per tap) because autodiff of the shifted form keeps every
  tap's window alive until the backward pass, which on CPU costs kh·kw feature
  maps per layer and is several times slower. Reverse mode,
  forward-over-reverse (Hessian-vector products, `jax.hessian`) and vmap work;
  pure forward mode (`jax.jvp` of the conv itself) does not: use impl="lax"
  or "masked_dense" for that.
  """
  return _depthwise_shifted(x, w, int(stride), int(dilation))


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
    if depthwise:
      return "shifted"
    # XLA's CPU backend runs grouped convolutions (and above all their kernel
    # gradients) ~5x slower than the dense conv of the zero-padded kernel,
    # which costs `groups` times the multiply-adds; GPUs and TPUs have
    # grouped kernels of their own.
    if groups > 1 and jax.default_backend() == "cpu":
      return "masked_dense"
    return "lax"
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
