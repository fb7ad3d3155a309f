"""What the linen (`bayesnas_jax.flax`) and NNX (`bayesnas_jax.nnx`) layers share:
Flax's layer arguments mapped onto the primitives of `bayesnas_jax.nn`.

* `promote`: Flax's dtype promotion (all to `dtype`, or to the inputs' common
  type) for plain and probed tensors alike.
* `conv_geometry` and `conv`: a 2-D convolution over NHWC inputs given by
  Flax's arguments (kernel size, strides, padding, input and kernel dilation,
  feature groups). "SAME" padding with one stride and one dilation for both
  axes runs `nn.conv2d`, whose implementations are fast on CPU (depthwise as
  shifted multiply-adds); every other geometry runs `lax.conv_general_dilated`
  under `nn.bilinear`. A convolution is bilinear in (input, kernel) whatever
  its geometry, so both carry the same curvature rule (SPEC §5: H_w = the
  kernel-gradient map of (x∘x, H_y), H_x = the input-gradient map of H_y run
  with w∘w).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax.numpy as jnp
from flax.linen.linear import canonicalize_padding
from jax import lax

from bayesnas_jax import nn
from bayesnas_jax.nn.layers import add_bias

_DIMS = ("NHWC", "HWIO", "NHWC")


def cast(x, dtype):
  """`x` (plain or probed) in `dtype`; a cast is a structural map."""
  if x is None or nn.value_of(x).dtype == dtype:
    return x
  return nn.structural(lambda v: v.astype(dtype), x)


def promote(dtype, *xs):
  """As Flax's promote_dtype: all to `dtype`, or to their common type."""
  if dtype is None:
    dtype = jnp.result_type(*[nn.value_of(x).dtype for x in xs if x is not None])
  return [cast(x, dtype) for x in xs]


def _pair(value, field, layer):
  """An int (or None, meaning 1) or a sequence of 2 ints, as a pair."""
  if value is None:
    return (1, 1)
  if isinstance(value, int):
    return (value, value)
  values = tuple(value)
  if len(values) != 2 or not all(isinstance(v, int) for v in values):
    raise ValueError(f"{layer}.{field}: expected an int or 2 ints (one per spatial axis), "
                     f"got {value!r}")
  return values


class ConvGeometry(NamedTuple):
  """A checked 2-D convolution geometry: padding is "SAME", "VALID" or a pair
  of (low, high) pairs; the others are pairs of ints."""
  kernel_size: tuple
  strides: tuple
  padding: str | tuple
  input_dilation: tuple
  kernel_dilation: tuple


def conv_geometry(kernel_size, strides=1, padding="SAME", input_dilation=1,
                  kernel_dilation=1, layer="Conv") -> ConvGeometry:
  """Flax's convolution arguments, checked (a one-line ValueError naming the
  field) and made explicit for a 2-D convolution."""
  if isinstance(kernel_size, int):
    kernel_size = (kernel_size, kernel_size)
  kernel_size = tuple(kernel_size)
  if len(kernel_size) != 2:
    raise ValueError(f"{layer}.kernel_size: expected 2 sizes such as (3, 3) (a 2-D "
                     f"convolution over NHWC inputs), got {kernel_size!r}")
  try:
    pads = canonicalize_padding(padding, 2)
  except (TypeError, ValueError) as err:
    raise ValueError(f"{layer}.padding: expected 'SAME', 'VALID' or (low, high) per axis, "
                     f"got {padding!r}") from err
  if isinstance(pads, str):
    if pads not in ("SAME", "VALID"):
      raise ValueError(f"{layer}.padding: expected 'SAME', 'VALID' or (low, high) per axis, "
                       f"got {padding!r}")
  else:
    pads = tuple((int(low), int(high)) for low, high in pads)
  return ConvGeometry(kernel_size, _pair(strides, "strides", layer), pads,
                      _pair(input_dilation, "input_dilation", layer),
                      _pair(kernel_dilation, "kernel_dilation", layer))


def _lax_conv(x, w, geometry: ConvGeometry, groups: int):
  return lax.conv_general_dilated(
      x, w, window_strides=geometry.strides, padding=geometry.padding,
      lhs_dilation=geometry.input_dilation, rhs_dilation=geometry.kernel_dilation,
      dimension_numbers=_DIMS, feature_group_count=groups)


def conv(x, kernel, bias, geometry: ConvGeometry, groups: int = 1, impl: str = "auto",
         layer: str = "Conv"):
  """y = conv(x, kernel) + bias for x [N, H, W, C] (plain or probed), kernel
  [kh, kw, C/groups, out], bias [out] or None, as `flax`'s Conv computes it."""
  shape = nn.value_of(x).shape
  if len(shape) != 4:
    raise ValueError(f"{layer}: expected an NHWC input, got shape {tuple(shape)}")
  kernel_in, out = nn.value_of(kernel).shape[2:]
  if shape[-1] % groups or out % groups:
    raise ValueError(f"{layer}.feature_group_count: {groups} does not divide the "
                     f"{shape[-1]} input channels and {out} features")
  if shape[-1] // groups != kernel_in:
    raise ValueError(f"{layer}: the input has {shape[-1]} channels; expected "
                     f"{kernel_in * groups} (the kernel's in_features)")
  square = (geometry.strides[0] == geometry.strides[1]
            and geometry.kernel_dilation[0] == geometry.kernel_dilation[1])
  if geometry.padding == "SAME" and square and geometry.input_dilation == (1, 1):
    return nn.conv2d(x, kernel, stride=geometry.strides[0],
                     dilation=geometry.kernel_dilation[0], groups=groups, b=bias, impl=impl)
  f = functools.partial(_lax_conv, geometry=geometry, groups=groups)
  return add_bias(nn.bilinear(f, x, kernel), bias)


def check_defaults(layer, names: Sequence[str], defaults, values):
  """A one-line ValueError for the first field in `names` whose value is not
  its default (`defaults`: name → default; `values`: name → value)."""
  for name in names:
    default, value = defaults[name], values[name]
    if value is not default:
      raise ValueError(f"{layer}.{name}: only the default ({_brief(default)}) is "
                       f"supported, got {_brief(value)}")


def _brief(value):
  """A one-line description of a field's value."""
  if hasattr(value, "shape") and hasattr(value, "dtype"):
    return f"an array of shape {tuple(value.shape)}"
  return " ".join(repr(value).split())
