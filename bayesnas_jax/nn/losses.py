"""Losses that seed the curvature recursion.

* softmax_cross_entropy: mean over the batch; seeds H_logits = (p − p²)/B per
  example (the diagonal of the softmax Hessian; the −ppᵀ off-diagonal part is
  dropped, SPEC §5).
* mean_squared_error: mean over all N entries of (pred − target)²; its Hessian
  is diagonal, H_pred = 2/N.

Both scale their seed by the incoming cotangent, so c·loss and sums of losses
are handled exactly.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bayesnas_jax.nn.probe import is_probed, value_of


def _cross_entropy(logits, labels):
  log_p = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_p, labels[..., None].astype(jnp.int32), axis=-1)
  return -jnp.mean(picked)


def _cross_entropy_curvature(logits, labels):
  del labels
  p = jax.nn.softmax(logits, axis=-1)
  examples = logits.size // logits.shape[-1]
  return (p - p * p) / examples


def _squared_error(pred, target):
  return jnp.mean(jnp.square(pred - target))


def _squared_error_curvature(pred, target):
  del target
  return jnp.full_like(pred, 2.0 / pred.size)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _seeded(loss, curvature, pred, pred_probe, target):
  del curvature, pred_probe
  return loss(pred, target)


def _seeded_fwd(loss, curvature, pred, pred_probe, target):
  return _seeded(loss, curvature, pred, pred_probe, target), (pred, target)


def _seeded_bwd(loss, curvature, residuals, grad_loss):
  pred, target = residuals
  _, vjp = jax.vjp(lambda p: loss(p, target), pred)
  (grad_pred,) = vjp(grad_loss)
  curv_pred = grad_loss * curvature(pred, target)
  return grad_pred, curv_pred, None


_seeded.defvjp(_seeded_fwd, _seeded_bwd)


def _seeded_loss(loss, curvature, pred, target):
  if not is_probed(pred):
    return loss(pred, value_of(target))
  return _seeded(loss, curvature, pred.value, pred.probe, value_of(target))


def softmax_cross_entropy(logits, labels):
  """Mean softmax cross-entropy; logits [..., K], integer labels [...]."""
  logits_shape = value_of(logits).shape
  if tuple(labels.shape) != tuple(logits_shape[:-1]):
    raise ValueError(f"softmax_cross_entropy: labels shape {tuple(labels.shape)} "
                     f"does not match logits shape {tuple(logits_shape)} "
                     "(expected logits.shape[:-1])")
  return _seeded_loss(_cross_entropy, _cross_entropy_curvature, logits, labels)


def mean_squared_error(pred, target):
  """Mean over all entries of (pred − target)²."""
  if tuple(value_of(pred).shape) != tuple(jnp.shape(target)):
    raise ValueError(f"mean_squared_error: pred shape {tuple(value_of(pred).shape)} "
                     f"!= target shape {tuple(jnp.shape(target))}")
  return _seeded_loss(_squared_error, _squared_error_curvature, pred, target)
