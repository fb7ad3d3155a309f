"""Architecture scalars for Flax NNX models (SPEC §1).

`ArchParam` is the `nnx.Variable` type of architecture scalars, apart from the
network weights (`nnx.Param`): `nnx.split(model, ArchParam, nnx.Param, ...)`
separates them, `nnx.state(model, ArchParam)` is the scalars' own pytree (its pure dict,
`nnx.to_pure_dict(...)`, is what `bayesnas_jax.hard_prior` keys its state by), and a
filter picks what `nnx.grad`, `nnx.Optimizer` or
`bayesnas_jax.nnx.value_grad_curvature` differentiate.

`ArchScale` is x ↦ w·x; `MixedOp` is eq. 1's Σ_o w_o·o(x) over candidate ops.
Both start at w = 1 (Algorithm 1) and scale through `nn.scale`, whose rule
gives the scalars' curvature H_w = Σ x²·H_y.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from bayesnas_jax import nn


class ArchParam(nnx.Variable):
  """An architecture scalar (or a vector of them): an `nnx.Variable` that is not
  an `nnx.Param`, so weight filters leave it out."""


def _scalars(layer, shape, init_value, param_dtype):
  if not jnp.issubdtype(param_dtype, jnp.floating):
    raise ValueError(f"{layer}.param_dtype: expected a float dtype (architecture scalars "
                     f"take gradients and curvature), got {jnp.dtype(param_dtype).name}")
  return ArchParam(jnp.full(shape, init_value, param_dtype))


class ArchScale(nnx.Module):
  """x ↦ w·x for an architecture scalar w (shape `shape`, default 0-d), an
  `ArchParam` named "w" initialised to `init_value`."""

  def __init__(self, shape: Sequence[int] = (), init_value: float = 1.0, *,
               param_dtype=jnp.float32):
    self.w = _scalars("ArchScale", tuple(shape), init_value, param_dtype)

  def __call__(self, x):
    return nn.scale(x, self.w.get_value())


class MixedOp(nnx.Module):
  """Σ_o w_o·op_o(x) over the candidate `ops` (modules or functions of x), with
  the vector w ([len(ops)], SPEC §1's op scalars) an `ArchParam` named "w".
  The ops' outputs must have one shape."""

  def __init__(self, ops: Sequence[Callable], init_value: float = 1.0, *,
               param_dtype=jnp.float32):
    if not ops:
      raise ValueError("MixedOp.ops: expected at least one candidate op")
    self.ops = nnx.List(list(ops))
    self.w = _scalars("MixedOp", (len(ops),), init_value, param_dtype)

  def __call__(self, x):
    w = self.w.get_value()
    terms = [nn.scale(op(x), w[i]) for i, op in enumerate(self.ops)]
    return terms[0] if len(terms) == 1 else nn.add(*terms)


def _is_variable(x):
  return isinstance(x, nnx.Variable)


def arch_mask(model, wrt=(nnx.Param, ArchParam)):
  """True at the `ArchParam`s of `nnx.state(model, wrt)`, False at the other
  variables: the `mask` of `hard_prior.l1_penalty` and `hard_prior.zero_pruned`
  for an `nnx.Optimizer(model, tx, wrt=wrt)` (a static pytree, as
  `optax.masked` wants; NNX hands the transformations plain arrays, so a mask
  cannot be computed from variable types inside them)."""
  mask = jax.tree.map(lambda v: isinstance(v, ArchParam), nnx.state(model, wrt),
                      is_leaf=_is_variable)
  if not any(jax.tree.leaves(mask)):
    raise ValueError(f"arch_mask: no ArchParam among the model's variables selected by "
                     f"wrt={wrt!r}; expected at least one (ArchScale and MixedOp hold them)")
  return mask
