"""Keeping backward-only work in the backward pass.

A backward rule often derives temporaries from its residuals alone: x∘x and
w∘w for the curvature, a zero-padded or transposed copy of x for a kernel
gradient. Those depend only on forward values, so XLA may schedule them during
the forward pass, and each then stays alive, one feature map per primitive,
until the backward pass reaches it. On CPU `lax.optimization_barrier` does not
prevent this (XLA drops it before scheduling), so :func:`after` ties the
residuals to the incoming cotangents with a real but numerically inert data
dependency: every residual is multiplied by a scalar that is always exactly 1
but is computed from one entry of each cotangent.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _is_float(x):
  return x is not None and jnp.issubdtype(jnp.result_type(x), jnp.floating)


def after(residuals, cotangents):
  """`residuals` unchanged in value, but computable only once `cotangents` are.

  The scalar is `2 if s > inf else 1` for `s` the sum of one entry of each
  float cotangent: always 1 (also for NaN or ±inf entries), which XLA cannot
  fold away, and multiplying by 1 is exact, so results are bit-for-bit those
  of the untied residuals.
  """
  probes = [c for c in jax.tree_util.tree_leaves(cotangents)
            if _is_float(c) and jnp.size(c)]
  if not probes:
    return residuals
  s = sum(jnp.ravel(c)[0].astype(jnp.float32) for c in probes)
  one = lax.select(s > jnp.inf, jnp.float32(2), jnp.float32(1))

  def tie(x):
    return x * one.astype(jnp.result_type(x)) if _is_float(x) else x

  return jax.tree_util.tree_map(tie, residuals)
