"""Flax (linen) layers on the curvature primitives of `bayesnas_jax.nn`.

`Dense`, `Conv` and `BatchNorm` take the arguments, parameter names, shapes and
initialisers of their `flax.linen` namesakes and compute the same values and
gradients, so a model built from them loads `flax.linen` checkpoints unchanged.
Because every parameter flows through a `bayesnas_jax.nn` primitive, the
curvature engine works on the model as it stands:

    loss, grads, curvature = value_grad_curvature(
        lambda v: nn.softmax_cross_entropy(model.apply(v, x), y), variables,
        probe_mask={"params": True, "arch": True, "batch_stats": False})

gives gradients and diagonal curvature for `params` and `arch` alike (batch
statistics are constants of the pass, SPEC §5).

`ArchScale` and `MixedOp` hold architecture scalars in their own variable
collection, `"arch"` (`ARCH`), apart from the network weights in `"params"`:
`model.init` returns both, the optimiser and the HARD prior see them as
separate pytrees (`variables["params"]`, `variables["arch"]`).

What is left out: circular, reflecting and causal padding, input dilation, and
convolutions other than 2-D; asking for them raises a ValueError naming the
field. `bayesnas_jax.nnx` has the same layers for Flax NNX.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as linen
import jax.numpy as jnp

from bayesnas_jax import nn
from bayesnas_jax.flax import common

ARCH = "arch"
Initializer = Callable[..., Any]


class Dense(linen.Module):
  """y = x·kernel + bias, `flax.linen.Dense`'s parameters ("kernel" [in, out],
  "bias" [out]); curvature by the bilinear rule of `nn.dense`."""
  features: int
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = linen.initializers.lecun_normal()
  bias_init: Initializer = linen.initializers.zeros_init()

  @linen.compact
  def __call__(self, x):
    in_features = nn.value_of(x).shape[-1]
    kernel = self.param("kernel", self.kernel_init, (in_features, self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = common.promote(self.dtype, x, kernel, bias)
    return nn.dense(x, kernel, bias)


class Conv(linen.Module):
  """2-D convolution over NHWC inputs with `flax.linen.Conv`'s parameters
  ("kernel" [kh, kw, in/groups, out], "bias" [out]): strides, "SAME", "VALID"
  or explicit (low, high) padding, kernel dilation and feature groups
  (depthwise when groups == channels); the mapping onto `bayesnas_jax.nn` is
  `bayesnas_jax.flax.common.conv`, shared with the NNX layer.

  `impl` picks the primitive's implementation for "SAME" padding with one
  stride and dilation for both axes ("auto": shifted multiply-adds for
  depthwise, which XLA runs far faster on CPU than a grouped convolution).
  """
  features: int
  kernel_size: int | Sequence[int] = 3
  strides: int | Sequence[int] = 1
  padding: Any = "SAME"
  kernel_dilation: int | Sequence[int] = 1
  feature_group_count: int = 1
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = linen.initializers.lecun_normal()
  bias_init: Initializer = linen.initializers.zeros_init()
  impl: str = "auto"

  @linen.compact
  def __call__(self, x):
    geometry = common.conv_geometry(self.kernel_size, self.strides, self.padding,
                                    kernel_dilation=self.kernel_dilation)
    channels, groups = nn.value_of(x).shape[-1], self.feature_group_count
    kernel = self.param("kernel", self.kernel_init,
                        geometry.kernel_size + (channels // groups, self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = common.promote(self.dtype, x, kernel, bias)
    return common.conv(x, kernel, bias, geometry, groups, self.impl)


class BatchNorm(linen.Module):
  """Batch normalisation over all axes but the last, as `flax.linen.BatchNorm`
  with `axis=-1`: parameters "scale" and "bias", running averages "mean" and
  "var" in the "batch_stats" collection (updated when it is mutable and the
  module is not initialising), `momentum` the running averages' decay.
  """
  use_running_average: bool | None = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  use_bias: bool = True
  use_scale: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  bias_init: Initializer = linen.initializers.zeros_init()
  scale_init: Initializer = linen.initializers.ones_init()

  @linen.compact
  def __call__(self, x, use_running_average: bool | None = None):
    use_running_average = linen.merge_param(
        "use_running_average", self.use_running_average, use_running_average)
    features = nn.value_of(x).shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    scale = (self.param("scale", self.scale_init, (features,), self.param_dtype)
             if self.use_scale else None)
    bias = (self.param("bias", self.bias_init, (features,), self.param_dtype)
            if self.use_bias else None)
    x, scale, bias = common.promote(self.dtype, x, scale, bias)
    if use_running_average:
      return nn.batch_norm(x, scale, bias, mean=nn.value_of(ra_mean.value),
                           var=nn.value_of(ra_var.value), eps=self.epsilon)
    y, (mean, var) = nn.batch_norm(x, scale, bias, eps=self.epsilon, return_stats=True)
    if not self.is_initializing() and self.is_mutable_collection("batch_stats"):
      decay = self.momentum
      ra_mean.value = decay * nn.value_of(ra_mean.value) + (1 - decay) * mean
      ra_var.value = decay * nn.value_of(ra_var.value) + (1 - decay) * var
    return y


class ArchScale(linen.Module):
  """x ↦ w·x for an architecture scalar w (shape `shape`, default a 0-d scalar)
  kept in the "arch" collection, initialised to `init_value` (1, as Algorithm 1)."""
  shape: Sequence[int] = ()
  init_value: float = 1.0

  @linen.compact
  def __call__(self, x):
    w = self.variable(ARCH, "w", lambda: jnp.full(tuple(self.shape), self.init_value,
                                                  jnp.float32))
    return nn.scale(x, w.value)


class MixedOp(linen.Module):
  """Σ_o w_o · op_o(x) over the candidate `ops` (modules or functions of x),
  with the vector w ([len(ops)], SPEC §1's op scalars) in the "arch"
  collection under "w". Outputs of all ops must have one shape."""
  ops: Sequence[Callable]
  init_value: float = 1.0

  @linen.compact
  def __call__(self, x):
    if not self.ops:
      raise ValueError("MixedOp.ops: expected at least one candidate op")
    w = self.variable(ARCH, "w", lambda: jnp.full((len(self.ops),), self.init_value,
                                                  jnp.float32)).value
    terms = [nn.scale(op(x), nn.structural(lambda v, i=i: v[i], w))
             for i, op in enumerate(self.ops)]
    return terms[0] if len(terms) == 1 else nn.add(*terms)
