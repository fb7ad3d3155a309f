"""Gradient and diagonal curvature of a loss of an NNX model, in one backward pass.

`value_grad_curvature(loss_fn, model, *args, wrt=...)` is shaped like
`nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt))(model, *args)` and
returns `(loss, grads, curvature)`: `grads` and `curvature` are `nnx.State`s
with the structure of NNX's gradient state for the `wrt` filter. It splits the
model into the variables selected by `wrt` and the rest, and hands the former
to `bayesnas_jax.curvature.value_grad_curvature`, which wraps each in a
`Probed` value (SPEC §5); the layers of `bayesnas_jax.nnx` pass those through
the curvature primitives of `bayesnas_jax.nn`. Variables the loss updates
(batch-norm running averages) are written back to `model`, as NNX's
transformations do.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from bayesnas_jax import curvature as engine
from bayesnas_jax import nn
from bayesnas_jax.hard_prior import paths


def _check(selected, wrt):
  names = paths(nnx.to_pure_dict(selected))
  if not names:
    raise ValueError(f"value_grad_curvature: the model has no variable selected by "
                     f"wrt={wrt!r}; expected at least one (architecture scalars are "
                     f"ArchParams, held by ArchScale and MixedOp)")
  for name, leaf in zip(names, jax.tree.leaves(selected)):
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise ValueError(f"value_grad_curvature: {name!r} has dtype "
                       f"{jnp.result_type(leaf)}; expected a float array (gradients and "
                       f"curvature need one)")


def value_grad_curvature(loss_fn: Callable, model, *args, wrt=nnx.Param,
                         mode: str = "hessian", has_aux: bool = False):
  """Returns `(loss, grads, curvature)` (or `((loss, aux), grads, curvature)`).

  Args:
    loss_fn: `loss_fn(model, *args)`, the model's layers from
      `bayesnas_jax.nnx` (or any `bayesnas_jax.nn` primitives), ending in one
      of `bayesnas_jax.nn`'s losses (sums and constant multiples are fine).
    model: an `nnx.Module`; the variables `loss_fn` updates (batch-norm
      running averages) are updated in it.
    wrt: an NNX filter of the variables to differentiate: `nnx.Param` (the
      weights, the default), `ArchParam` (the architecture scalars) or both,
      `(nnx.Param, ArchParam)`. The others reach `loss_fn` as plain arrays.
    mode: "hessian" or "ggn" (`bayesnas_jax.value_grad_curvature`).
    has_aux: `loss_fn` returns `(loss, aux)`; aux must hold plain arrays.

  `grads` equals NNX's gradient state for `wrt`; `curvature` has its structure
  and holds the diagonal curvature (SPEC §5). Works under `nnx.jit` (and
  under `jax.jit` of a function that merges the model from its state).
  """
  graphdef, selected, rest = nnx.split(model, wrt, ...)
  _check(selected, wrt)

  def pure_loss(selected_):
    # Fresh variables for this trace (those of `model` cannot be written in it).
    inner = nnx.merge(graphdef, selected_, jax.tree.map(lambda v: v, rest))
    out = loss_fn(inner, *args)
    loss, aux = out if has_aux else (out, None)
    _, _, updated = nnx.split(inner, wrt, ...)
    # Variables written during the pass hold plain arrays (a probed value
    # would be one only if a layer stored an activation).
    updated = jax.tree.map(nn.value_of, updated, is_leaf=nn.is_probed)
    return loss, (aux, updated)

  (loss, (aux, updated)), grads, curvature = engine.value_grad_curvature(
      pure_loss, selected, mode=mode, has_aux=True)
  nnx.update(model, updated)
  return ((loss, aux) if has_aux else loss), grads, curvature
