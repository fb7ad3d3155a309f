"""Flax NNX layers on the curvature primitives of `bayesnas_jax.nn`.

`Linear`, `Conv` and `BatchNorm` are subclasses of their `flax.nnx` namesakes
that keep the constructor (signature, parameter names, shapes, initialisers,
the order in which they draw keys from `rngs`, so the same `nnx.Rngs` give the
same values) and replace only `__call__`: every parameter flows through a
`bayesnas_jax.nn` primitive, so `bayesnas_jax.nnx.value_grad_curvature` gives
the diagonal curvature of a loss (SPEC §5) with respect to any of them, and
outside it they compute what the `flax.nnx` layers compute.

What is left out (a one-line ValueError naming the field, at construction or
at the call): convolutions other than 2-D over NHWC inputs, circular,
reflecting and causal padding, kernel masks, custom `dot_general`,
`conv_general_dilated` or `promote_dtype`, `precision`,
`preferred_element_type`, `out_sharding`, batch norm over an axis other than
the last, across devices (`axis_name`) or with a mask. `use_fast_variance` is
accepted; the variance is computed in two passes either way.
"""
from __future__ import annotations

import inspect

from flax import nnx

from bayesnas_jax import nn
from bayesnas_jax.flax import common


def _defaults(cls):
  return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}


def _no_sharding(layer, out_sharding):
  if out_sharding is not None:
    raise ValueError(f"{layer}.out_sharding: only None is supported, got {out_sharding!r}")


class Linear(nnx.Linear):
  """y = x·kernel + bias over the last axis, as `nnx.Linear` ("kernel"
  [in, out], "bias" [out]); curvature by the bilinear rule of `nn.dense`."""

  _FIXED = ("precision", "dot_general", "promote_dtype", "preferred_element_type")

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    common.check_defaults("Linear", self._FIXED, _defaults(nnx.Linear),
                          {name: getattr(self, name) for name in self._FIXED})

  __init__.__signature__ = inspect.signature(nnx.Linear.__init__)

  def __call__(self, inputs, out_sharding=None):
    _no_sharding("Linear", out_sharding)
    kernel = self.kernel.get_value()
    bias = self.bias.get_value() if self.bias is not None else None
    inputs, kernel, bias = common.promote(self.dtype, inputs, kernel, bias)
    return nn.dense(inputs, kernel, bias)


class Conv(nnx.Conv):
  """2-D convolution over NHWC inputs, as `nnx.Conv` ("kernel" [kh, kw,
  in/groups, out], "bias" [out]): strides, "SAME", "VALID" or explicit
  padding, input and kernel dilation, feature groups (depthwise when groups
  == channels); the mapping onto `bayesnas_jax.nn` is shared with the linen
  layer (`bayesnas_jax.flax.common.conv`).

  `impl` (an attribute, "auto" by default) picks the primitive's
  implementation for "SAME" padding with one stride and dilation for both
  axes: `conv.impl = "lax"` after construction, say.
  """

  _FIXED = ("mask", "precision", "conv_general_dilated", "promote_dtype",
            "preferred_element_type")
  impl = "auto"

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    common.check_defaults("Conv", self._FIXED, _defaults(nnx.Conv),
                          {name: getattr(self, name) for name in self._FIXED})
    self._geometry()  # checks the geometry at construction

  def _geometry(self):
    return common.conv_geometry(self.kernel_size, self.strides, self.padding,
                                self.input_dilation, self.kernel_dilation)

  __init__.__signature__ = inspect.signature(nnx.Conv.__init__)

  def __call__(self, inputs, out_sharding=None):
    _no_sharding("Conv", out_sharding)
    kernel = self.kernel.get_value()
    bias = self.bias.get_value() if self.bias is not None else None
    inputs, kernel, bias = common.promote(self.dtype, inputs, kernel, bias)
    return common.conv(inputs, kernel, bias, self._geometry(), self.feature_group_count,
                       self.impl)


class BatchNorm(nnx.BatchNorm):
  """Batch normalisation over all axes but the last, as `nnx.BatchNorm`:
  parameters "scale" and "bias", running averages "mean" and "var"
  (`nnx.BatchStat`, updated when batch statistics are used, `momentum` their
  decay). In the curvature pass the statistics are constants (SPEC §5)."""

  _FIXED = ("axis_name", "axis_index_groups", "promote_dtype")

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    common.check_defaults("BatchNorm", self._FIXED, _defaults(nnx.BatchNorm),
                          {name: getattr(self, name) for name in self._FIXED})

  __init__.__signature__ = inspect.signature(nnx.BatchNorm.__init__)

  def __call__(self, x, use_running_average=None, *, mask=None):
    if mask is not None:
      raise ValueError("BatchNorm.mask: only None is supported")
    if use_running_average is None:
      use_running_average = self.use_running_average
    if use_running_average is None:
      raise ValueError("BatchNorm.use_running_average: expected True or False, in the "
                       "constructor or the call; got None in both")
    ndim = nn.value_of(x).ndim
    if not isinstance(self.axis, int) or self.axis % ndim != ndim - 1:
      raise ValueError(f"BatchNorm.axis: only the last axis (-1) is supported, got "
                       f"{self.axis!r}")
    scale = self.scale.get_value() if self.scale is not None else None
    bias = self.bias.get_value() if self.bias is not None else None
    x, mean, var, scale, bias = common.promote(
        self.dtype, x, self.mean.get_value(), self.var.get_value(), scale, bias)
    if use_running_average:
      return nn.batch_norm(x, scale, bias, mean=nn.value_of(mean), var=nn.value_of(var),
                           eps=self.epsilon)
    y, (batch_mean, batch_var) = nn.batch_norm(x, scale, bias, eps=self.epsilon,
                                               return_stats=True)
    decay = self.momentum
    self.mean[...] = decay * self.mean[...] + (1 - decay) * batch_mean
    self.var[...] = decay * self.var[...] + (1 - decay) * batch_var
    return y
