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

What is left out: explicit paddings (only "SAME", and "VALID" at stride 1, as the
SAME output cropped), unequal strides or dilations per axis, and input dilation;
asking for them raises a ValueError naming the field.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as linen
import jax.numpy as jnp

from bayesnas_jax import nn
from bayesnas_jax.nn import conv as conv_impls

ARCH = "arch"
Initializer = Callable[..., Any]


def _cast(x, dtype):
  """`x` (plain or probed) in `dtype`; a cast is a structural map."""
  if x is None or nn.value_of(x).dtype == dtype:
    return x
  return nn.structural(lambda v: v.astype(dtype), x)


def _promote(dtype, *xs):
  """As `flax.linen`'s promote_dtype: all to `dtype`, or to their common type."""
  if dtype is None:
    dtype = jnp.result_type(*[nn.value_of(x).dtype for x in xs if x is not None])
  return [_cast(x, dtype) for x in xs]


def _square(value, field, layer):
  """An int, or a sequence of equal ints, as one int."""
  if isinstance(value, int):
    return value
  values = tuple(value)
  if not values or any(v != values[0] for v in values):
    raise ValueError(f"{layer}.{field}: expected one int or equal ints per axis, got {value!r}")
  return int(values[0])


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
    x, kernel, bias = _promote(self.dtype, x, kernel, bias)
    return nn.dense(x, kernel, bias)


class Conv(linen.Module):
  """SAME-padded 2-D convolution over NHWC inputs with `flax.linen.Conv`'s
  parameters ("kernel" [kh, kw, in/groups, out], "bias" [out]); strides,
  kernel dilation and feature groups (depthwise when groups == channels).

  `impl` picks the primitive's implementation ("auto": shifted multiply-adds
  for depthwise, which XLA runs far faster on CPU than a grouped convolution).
  """
  features: int
  kernel_size: int | Sequence[int] = 3
  strides: int | Sequence[int] = 1
  padding: str = "SAME"
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
    if self.padding not in ("SAME", "VALID"):
      raise ValueError(f"Conv.padding: expected 'SAME' or 'VALID', got {self.padding!r}")
    shape = nn.value_of(x).shape
    if len(shape) != 4:
      raise ValueError(f"Conv: expected an NHWC input, got shape {tuple(shape)}")
    kernel_size = ((self.kernel_size,) * 2 if isinstance(self.kernel_size, int)
                   else tuple(self.kernel_size))
    if len(kernel_size) != 2:
      raise ValueError(f"Conv.kernel_size: expected 2 sizes, got {self.kernel_size!r}")
    stride = _square(self.strides, "strides", "Conv")
    dilation = _square(self.kernel_dilation, "kernel_dilation", "Conv")
    groups = self.feature_group_count
    if shape[-1] % groups or self.features % groups:
      raise ValueError(f"Conv.feature_group_count: {groups} does not divide the "
                       f"{shape[-1]} input channels and {self.features} features")
    kernel = self.param("kernel", self.kernel_init,
                        kernel_size + (shape[-1] // groups, self.features), self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = _promote(self.dtype, x, kernel, bias)
    y = nn.conv2d(x, kernel, stride=stride, dilation=dilation, groups=groups, b=bias,
                  impl=self.impl)
    if self.padding == "VALID":
      if stride != 1:
        raise ValueError("Conv.padding: 'VALID' is supported with strides 1 only")
      # VALID = the SAME output without the positions that read padding.
      (top, bottom), (left, right) = conv_impls.same_pads(shape[1:3], kernel_size, 1, dilation)
      y = y[:, top:shape[1] - bottom, left:shape[2] - right, :]
    return y


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
    x, scale, bias = _promote(self.dtype, x, scale, bias)
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
