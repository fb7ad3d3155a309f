"""The curvature engine: gradient and diagonal curvature in one backward pass.

`value_grad_curvature` wraps every parameter leaf in a :class:`Probed` pair
(value, zero probe) and runs one `jax.vjp` of the loss with respect to both.
The primitives of :mod:`bayesnas_jax.nn` route the gradient through the values
and the diagonal curvature (SPEC §5; thesis (T) eqs. 4-9, 4-10) through the
probes, so the probes' cotangents are the curvature.

`exact_diagonal` is the slow exact reference: the Hessian diagonal of a chosen
subtree by batched Hessian-vector products. `softmax_ggn_diagonal` is the exact
Gauss–Newton diagonal of a mean softmax cross-entropy by one Jacobian-vector
product per entry. Both differentiate through everything the forward pass does,
batch-norm statistics included, and cost one pass per selected entry: they are
for small subtrees such as the architecture scalars.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from bayesnas_jax.nn.probe import MODES, Probed


def _broadcast_prefix(prefix, tree):
  return jax.tree_util.tree_map(
      lambda flag, sub: jax.tree_util.tree_map(lambda _: bool(flag), sub), prefix, tree)


def value_grad_curvature(loss_fn: Callable, params: Any, *args, mode: str = "hessian",
                         has_aux: bool = False, probe_mask: Any = True):
  """Returns `(loss, grads, curvature)` (or `((loss, aux), grads, curvature)`).

  Args:
    loss_fn: `loss_fn(params, *args)` built from `bayesnas_jax.nn` primitives and
      ending in one of its losses (sums and constant multiples of losses are
      fine). Leaves of `params` reach it as `Probed` tensors.
    params: any pytree of float arrays (weights and architecture scalars may be
      separate subtrees).
    mode: "hessian" keeps the σ''·∂L/∂a residual of each non-linearity; "ggn"
      drops it (Gauss–Newton).
    has_aux: `loss_fn` returns `(loss, aux)`; aux must hold plain arrays.
    probe_mask: a bool, or a pytree prefix of `params` with bools: only those
      leaves are probed (their curvature computed); the others reach `loss_fn`
      as plain arrays, still get gradients, and get zero curvature. E.g.
      `{"weights": False, "arch": True}` gives the architecture-scalar
      curvature together with every gradient, at less cost.

  `grads` equals `jax.grad(loss_fn)(params, *args)`; `curvature` has the
  structure of `params` and holds the diagonal curvature. A parameter that no
  primitive consumes gets zero curvature. One call is one forward and one
  backward pass; it works under `jax.jit` and `jax.vmap`.
  """
  if mode not in MODES:
    raise ValueError(f"value_grad_curvature: mode must be one of {MODES}, got {mode!r}")
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
      raise ValueError(f"value_grad_curvature: params{jax.tree_util.keystr(path)} has dtype "
                       f"{jnp.result_type(leaf)}; expected a float array (curvature and "
                       f"gradients need one)")
  probes = jax.tree_util.tree_map(jnp.zeros_like, params)
  flags = _broadcast_prefix(probe_mask, params)

  def probed_loss(params_, probes_):
    wrapped = jax.tree_util.tree_map(
        lambda flag, v, p: Probed(v, p, mode) if flag else v, flags, params_, probes_)
    return loss_fn(wrapped, *args)

  if has_aux:
    out, vjp, aux = jax.vjp(probed_loss, params, probes, has_aux=True)
  else:
    out, vjp = jax.vjp(probed_loss, params, probes)
  if jnp.ndim(out) != 0:
    raise ValueError(f"value_grad_curvature: loss_fn must return a scalar, got "
                     f"shape {jnp.shape(out)}")
  grads, curvature = vjp(jnp.ones_like(out))
  return ((out, aux) if has_aux else out), grads, curvature


def _select(params, wrt):
  if wrt is None:
    return (lambda p: p), (lambda p, sub: sub)
  if callable(wrt):
    raise TypeError("exact_diagonal: wrt must be None, a key or a tuple of keys")
  path = wrt if isinstance(wrt, tuple) else (wrt,)

  def get(p):
    for key in path:
      p = p[key]
    return p

  def put(p, sub):
    if not path:
      return sub
    def rebuild(node, keys):
      node = dict(node) if isinstance(node, dict) else list(node)
      node[keys[0]] = sub if len(keys) == 1 else rebuild(node[keys[0]], keys[1:])
      return node
    return rebuild(p, path)

  try:
    get(params)
  except (KeyError, IndexError, TypeError) as err:
    raise KeyError(f"exact_diagonal: wrt={wrt!r} is not a path into params") from err
  return get, put


def exact_diagonal(loss_fn: Callable, params: Any, *args, wrt=None, chunk: int = 256):
  """The exact diagonal of ∇²loss with respect to the subtree `wrt`.

  `wrt` is None (all of params), a key, or a tuple of keys into nested dicts and
  lists. Computed by Hessian-vector products with unit vectors, `chunk` at a
  time under `jax.vmap`: cost grows with the number of selected entries, so use
  it for architecture scalars and tiny problems (it is the test oracle).
  `loss_fn` receives plain arrays.
  """
  get, put = _select(params, wrt)
  flat, unravel = ravel_pytree(get(params))

  def loss_of_flat(v):
    return loss_fn(put(params, unravel(v)), *args)

  grad_fn = jax.grad(loss_of_flat)

  def hvp_entry(flat_, index):
    unit = jnp.zeros_like(flat_).at[index].set(1)
    return jax.jvp(grad_fn, (flat_,), (unit,))[1][index]

  return _flat_entries(hvp_entry, params, wrt, chunk)


def _flat_entries(fn, params, wrt, chunk):
  """Evaluates fn(flat, unravel, index) for every entry of the selected subtree,
  `chunk` entries at a time under `jax.vmap`; returns them shaped like it."""
  get, _ = _select(params, wrt)
  flat, unravel = ravel_pytree(get(params))
  n = flat.shape[0]
  chunk = max(1, min(int(chunk), n))
  indices = jnp.arange(n)
  padded = -(-n // chunk) * chunk
  indices = jnp.pad(indices, (0, padded - n)).reshape(-1, chunk)
  values = jax.lax.map(jax.vmap(lambda i: fn(flat, i)), indices).reshape(-1)[:n]
  return unravel(values)


def softmax_ggn_diagonal(logits_fn: Callable, params: Any, *args, wrt=None,
                         chunk: int = 64):
  """The exact Gauss–Newton diagonal of mean softmax cross-entropy.

  `logits_fn(params, *args)` returns logits [B, K] from plain arrays. For entry
  i, J_i = ∂logits/∂θ_i (one `jax.jvp`) and

      G_ii = (1/B) Σ_b J_ib·(diag p_b − p_b p_bᵀ)·J_ib
           = (1/B) Σ_b [Σ_k p_bk J_ibk² − (Σ_k p_bk J_ibk)²]  ≥ 0,

  the curvature of the mean cross-entropy with the network linearised at θ.
  It does not depend on the labels, is never negative (nothing to clamp), and
  the Jacobian carries every effect of θ_i on the logits (batch-norm
  statistics that move with θ_i included). `wrt` selects a subtree as in
  `exact_diagonal`. J_i comes from the transpose of one shared VJP (the
  primitives of `bayesnas_jax.nn` have reverse-mode rules only): one forward,
  then per entry a backward pass and its transpose, `chunk` entries at a time.
  """
  get, put = _select(params, wrt)
  flat, unravel = ravel_pytree(get(params))
  logits, vjp_fn = jax.vjp(lambda v: logits_fn(put(params, unravel(v)), *args), flat)
  if jnp.ndim(logits) != 2:
    raise ValueError(f"softmax_ggn_diagonal: logits_fn must return [batch, classes], got "
                     f"shape {jnp.shape(logits)}")
  probs = jax.nn.softmax(logits, axis=-1)

  def entry(_, index):
    # J e_i as the transpose of the (linear) VJP, u ↦ Jᵀu: reverse over
    # reverse, since the library's primitives define reverse-mode rules only.
    jac = jax.grad(lambda u: vjp_fn(u)[0][index])(jnp.zeros_like(logits))
    mean = jnp.sum(probs * jac, axis=-1)
    return jnp.mean(jnp.sum(probs * jnp.square(jac), axis=-1) - jnp.square(mean))

  return _flat_entries(entry, params, wrt, chunk)


def sampled_ggn_from_vjp(vjp_fn: Callable, logits, key, samples: int = 1):
  """The sampled-label estimate of a Gauss–Newton diagonal from one VJP.

  `vjp_fn(u)` maps a cotangent u [B, K] of the logits to the cotangent of the
  parameters (any pytree), i.e. u ↦ Jᵀu, and `logits` [B, K] are the logits of
  a mean softmax cross-entropy. For labels ŷ_b drawn from the model's own
  prediction p_b, u_b = p_b − e_ŷ_b has mean 0 and covariance diag p_b − p_b p_bᵀ,
  and the u_b are independent, so

      E[(Jᵀu)_i²] = Σ_b J_ibᵀ (diag p_b − p_b p_bᵀ) J_ib = B · G_ii,

  the cross-example terms having zero mean even when batch norm couples the
  examples (J carries that coupling). The estimate is (Jᵀu)²/B averaged over
  `samples` independent draws: unbiased, never negative, one backward pass per
  draw whatever the number of parameters. For one draw (Jᵀu)_i is a sum of B
  zero-mean terms, so the estimate is close to G_ii·χ²₁: its relative standard
  deviation is about √(2/samples) per batch, and averaging over K batches
  divides it by √K.
  """
  if jnp.ndim(logits) != 2:
    raise ValueError(f"sampled_ggn_from_vjp: logits must be [batch, classes], got shape "
                     f"{jnp.shape(logits)}")
  if int(samples) < 1:
    raise ValueError(f"sampled_ggn_from_vjp: samples must be >= 1, got {samples}")
  logits = jax.lax.stop_gradient(logits)
  batch, classes = logits.shape
  probs = jax.nn.softmax(logits, axis=-1)
  labels = jax.random.categorical(key, logits, axis=-1, shape=(int(samples), batch))
  cotangents = probs[None] - jax.nn.one_hot(labels, classes, dtype=probs.dtype)
  if int(samples) == 1:
    grads = jax.tree_util.tree_map(lambda g: g[None], vjp_fn(cotangents[0]))
  else:
    grads = jax.vmap(vjp_fn)(cotangents)
  return jax.tree_util.tree_map(lambda g: jnp.mean(jnp.square(g), axis=0) / batch, grads)


def sampled_ggn_diagonal(logits_fn: Callable, params: Any, key, *args, wrt=None,
                         samples: int = 1):
  """An unbiased estimate of `softmax_ggn_diagonal` at the cost of one forward
  and `samples` backward passes, whatever the number of entries.

  `logits_fn(params, *args)` returns logits [B, K]; `wrt` selects a subtree as
  in `exact_diagonal`; `key` draws the labels. See `sampled_ggn_from_vjp` for
  the estimator and its variance; like the exact one, it differentiates
  through batch norm's batch statistics.
  """
  get, put = _select(params, wrt)
  logits, vjp_fn = jax.vjp(lambda sub: logits_fn(put(params, sub), *args), get(params))
  return sampled_ggn_from_vjp(lambda u: vjp_fn(u)[0], logits, key, samples)
