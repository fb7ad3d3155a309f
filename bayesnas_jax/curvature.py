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
