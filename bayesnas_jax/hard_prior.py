"""The HARD prior as state for your own training loop (paper Algorithm 1).

For any pytree of architecture scalars — e.g. the "arch" collection of a Flax
model built with `bayesnas_jax.flax` — and the diagonal curvature of the data
loss with respect to them (`value_grad_curvature`, accumulated over a round):

    state = hard_prior.init(arch)
    loss = data_loss + hard_prior.penalty(arch, state, lambda_w)      # eq. 16
    ...one round of training, accumulating H...
    state = hard_prior.update(state, arch, H, lambda_w=lambda_w,      # eqs. 17–20
                              dependency={"block2/mix/w": ("block1/mix/w",)})
    arch = hard_prior.apply_masks(arch, state)                         # pruned → 0
    choice = hard_prior.select(hard_prior.scores(arch, H, state), state)

Per scalar, eq. 17 C = (1/γ + H/λ_w)⁻¹, eq. 18 ω = sqrt(γ − C)/γ, eq. 19
s = |w|/ω; eq. 20 turns the switches s into prior variances γ along a
dependency graph; a scalar is pruned for good once γ ≤ 1/(2πe) (its prior's
entropy ≤ 0). Every function is pure and jittable; `update` checks at its
boundary that the curvature matches the scalars in structure and shape and is
finite, since a NaN would silently prune (or keep) everything downstream.

The dependency graph names leaves by their path, keys joined by "/" (as
`flax.traverse_util.flatten_dict(sep="/")`; `paths(arch)` lists them). It maps
a leaf to the leaves it depends on ("parents"): the leaf matters only if its
own switch AND the information reaching it are on, and the information is the
OR of its parents, so

    γ_leaf = h(s_leaf, Σ_parents Σ_entries γ_parent),   h(a, b) = (1/a + 1/b)⁻¹,

with the parents' γ computed first (the "full" rule of SPEC §2 applied
recursively; a leaf without parents has γ = s, plain ARD). Each parent
contributes the sum of its entries (its alternatives are OR-ed). Cycles and
unknown names raise a ValueError.

The same prior in an optax chain (`l1_penalty`, `zero_pruned`): instead of
adding `penalty` to the loss and calling `apply_masks` after each step,

    tx = optax.chain(hard_prior.l1_penalty(lambda_w, mask),   # + λ_w·ω·sign(w)
                     optax.sgd(0.05, momentum=0.9),
                     hard_prior.zero_pruned(mask))             # pruned w → 0
    updates, opt_state = tx.update(grads, opt_state, params, prior_state=state)

The current `HardState` comes with every update as the extra argument
`prior_state` (optax's `GradientTransformationExtraArgs`; `nnx.Optimizer.update`
passes keyword arguments on), so the optimiser stays the same across rounds;
between rounds, `update(state, scalars, curvature, lambda_w=...)` is the pure
function that makes the next state. `mask` selects the architecture scalars
among the parameters as in `optax.masked` (a pytree prefix of bools, or a
function of the parameters that returns one; `bayesnas_jax.nnx.arch_mask(model)`
for an NNX model), None when the parameters are the scalars alone. The selected
leaves must be the leaves of the prior state in order and shape, their paths
ending in the state's leaf names (so `nnx.to_pure_dict(nnx.state(model,
ArchParam))` and an NNX optimiser's parameters line up). `l1_penalty` goes
before the optimiser (it adds eq. 16's gradient to the data-loss gradient, so
momentum and Adam see the whole gradient), `zero_pruned` last (it replaces the
pruned scalars' updates).

An NNX model's scalars and curvature are `nnx.State`s; this module keys its
state by plain pytrees, so hand it `nnx.to_pure_dict(state)` (the leaf names are
then the attribute paths, "mix/w").
"""
from __future__ import annotations

import functools
from typing import Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import optax

from bayesnas_jax import prior

PRUNE_THRESHOLD = prior.PRUNE_THRESHOLD
RANK_BY = prior.RANK_BY


HardState = prior.HardState  # γ, ω, keep and the update count per scalar


def _path_name(path) -> str:
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def paths(tree) -> list[str]:
  """The names of the leaves of `tree`, keys joined by "/", in leaf order."""
  return [_path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _require_float(where, tree, what):
  for name, leaf in zip(paths(tree), jax.tree_util.tree_leaves(tree)):
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise ValueError(f"{where}: {what} {name!r} has dtype {jnp.result_type(leaf)}; "
                       f"expected a float array")


def _describe(tree, limit=6):
  leaves = jax.tree_util.tree_leaves(tree)
  names = [f"{n}{list(jnp.shape(x))}" for n, x in zip(paths(tree), leaves)]
  more = f", … ({len(names)} leaves)" if len(names) > limit else ""
  return "[" + ", ".join(names[:limit]) + more + "]"


def init(scalars) -> HardState:
  """Algorithm 1's start: γ = 1, ω = 1, every scalar kept."""
  _require_float("init", scalars, "scalar")
  ones = jax.tree_util.tree_map(lambda w: jnp.ones(jnp.shape(w), jnp.result_type(w)), scalars)
  keep = jax.tree_util.tree_map(lambda w: jnp.ones(jnp.shape(w), bool), scalars)
  return HardState(gamma=ones, omega=ones, keep=keep, rounds=jnp.zeros((), jnp.int32))


def masks(state: HardState):
  """0/1 per scalar: 1 where kept."""
  return jax.tree_util.tree_map(lambda k, g: k.astype(g.dtype), state.keep, state.gamma)


def apply_masks(scalars, state: HardState):
  """The scalars with the pruned ones set to 0 (they stay 0: apply after each step)."""
  return jax.tree_util.tree_map(lambda w, k: jnp.where(k, w, jnp.zeros_like(w)), scalars,
                                state.keep)


def penalty(scalars, state: HardState, lambda_w: float):
  """Eq. 16's sparsity term λ_w Σ ω|w| over the kept scalars (add it to the data
  loss; ω comes from the last update, 1 before the first)."""
  terms = jax.tree_util.tree_map(
      lambda w, om, k: jnp.sum(jnp.where(k, om * jnp.abs(w), 0)), scalars, state.omega,
      state.keep)
  return lambda_w * sum(jax.tree_util.tree_leaves(terms))


def _check(state, scalars, curvature):
  if jax.tree_util.tree_structure(curvature) != jax.tree_util.tree_structure(scalars):
    hint = (" (an nnx.State converts with nnx.to_pure_dict)"
            if hasattr(curvature, "to_pure_dict") or hasattr(scalars, "to_pure_dict") else "")
    raise ValueError(f"update: the curvature has leaves {_describe(curvature)}; expected "
                     f"the structure of the scalars, {_describe(scalars)}{hint}")
  _require_float("update", curvature, "curvature")
  chex.assert_trees_all_equal_shapes(scalars, curvature)
  chex.assert_trees_all_equal_shapes(scalars, state.gamma)
  leaves = jax.tree_util.tree_leaves(curvature)
  if not any(isinstance(x, jax.core.Tracer) for x in leaves):
    chex.assert_tree_all_finite(curvature)


def _order(names: Sequence[str], dependency: Mapping[str, Sequence[str]]):
  """Leaves in an order where every parent comes before its children."""
  known = set(names)
  for child, parents in dependency.items():
    for name in (child, *parents):
      if name not in known:
        raise ValueError(f"dependency: {name!r} is not a leaf of the scalars "
                         f"(leaves: {', '.join(names)})")
  order, state = [], {}

  def visit(name, stack):
    if state.get(name) == "done":
      return
    if state.get(name) == "visiting":
      raise ValueError(f"dependency: cycle through {' → '.join(stack + [name])}")
    state[name] = "visiting"
    for parent in dependency.get(name, ()):
      visit(parent, stack + [name])
    state[name] = "done"
    order.append(name)

  for name in names:
    visit(name, [])
  return order


@functools.partial(jax.jit, static_argnames=("lambda_w", "dependency", "threshold"))
def _update(state, scalars, curvature, *, lambda_w, dependency, threshold):
  leaves, treedef = jax.tree_util.tree_flatten(scalars)
  names = paths(scalars)
  curv = [jnp.maximum(h, 0) for h in treedef.flatten_up_to(curvature)]
  gamma_old = treedef.flatten_up_to(state.gamma)
  keep_old = treedef.flatten_up_to(state.keep)
  updates = [prior.update(w, h, g, lambda_w) for w, h, g in zip(leaves, curv, gamma_old)]
  parents = dict(dependency)
  gammas = {}
  for name in _order(names, parents):
    s = updates[names.index(name)].switch
    if parents.get(name):
      information = sum(jnp.sum(gammas[p]) for p in parents[name])
      s = prior.harmonic(jnp.maximum(s, 0), jnp.maximum(information, 0))
    gammas[name] = s
  gamma = [gammas[n] for n in names]
  keep = [k & prior.keep_mask(g, threshold) for k, g in zip(keep_old, gamma)]
  return HardState(gamma=treedef.unflatten(gamma),
                   omega=treedef.unflatten([u.omega for u in updates]),
                   keep=treedef.unflatten(keep), rounds=state.rounds + 1)


def update(state: HardState, scalars, curvature, *, lambda_w: float,
           dependency: Mapping[str, Sequence[str]] | None = None,
           threshold: float = PRUNE_THRESHOLD) -> HardState:
  """One HARD update after a round (eqs. 17–20 and pruning).

  Args:
    state: from `init` or the previous update.
    scalars: the architecture scalars w at the end of the round.
    curvature: the diagonal curvature H of the data loss per scalar, same
      structure (negative entries are clamped at 0).
    lambda_w: the sparsity intensity λ_w, also the noise variance H is divided by.
    dependency: leaf name → names of the leaves it depends on (module
      docstring); None or {} for independent scalars.
    threshold: prune when γ ≤ threshold (1/(2πe)).
  """
  if lambda_w <= 0:
    raise ValueError(f"update: lambda_w must be > 0, got {lambda_w}")
  _check(state, scalars, curvature)
  frozen = tuple(sorted((k, tuple(v)) for k, v in (dependency or {}).items()))
  _order(paths(scalars), dict(frozen))  # names and cycles, with a plain error
  return _update(state, scalars, curvature, lambda_w=float(lambda_w), dependency=frozen,
                 threshold=float(threshold))


def scores(scalars, curvature, state: HardState, by: str = "curvature"):
  """What to rank surviving scalars by at the end of a search: "gamma" (the
  paper's γ), "curvature" (H, the default of this library's searches) or
  "saliency" (w²H); docs/method_options.md gives the reasons."""
  if by not in RANK_BY:
    raise ValueError(f"scores: by must be one of {RANK_BY}, got {by!r}")
  return jax.tree_util.tree_map(
      lambda w, h, g: prior.rank_score(by, w, h, g, grouping="none"),
      scalars, curvature, state.gamma)


def select(scores_, state: HardState, k: int = 1):
  """Per leaf, the indices of the `k` best kept entries along the last axis
  (the candidate ops of a mixed op), best first; -1 where fewer than k are kept.
  A 0-d leaf counts as one alternative."""
  def top(score, keep):
    score, keep = jnp.atleast_1d(score), jnp.atleast_1d(keep)
    score = jnp.where(keep, score, -jnp.inf)
    order = jnp.argsort(-score, axis=-1)[..., :k]
    kept = jnp.take_along_axis(keep, order, axis=-1)
    return jnp.where(kept, order, -1)
  return jax.tree_util.tree_map(top, scores_, state.keep)


# ----------------------------------------------------------------------------
# The prior as optax transformations (module docstring).


def _selected(where, updates, params, prior_state):
  """The selected updates' leaves and treedef, the scalars w, and the state's ω
  and keep flags, checked to line up leaf by leaf."""
  if not isinstance(prior_state, HardState):
    raise ValueError(f"{where}: update needs prior_state=<HardState> (the extra argument, "
                     f"e.g. optimizer.update(model, grads, prior_state=state)), got "
                     f"{type(prior_state).__name__}")
  if params is None:
    raise ValueError(f"{where}: update needs params (the architecture scalars w)")
  leaves, treedef = jax.tree_util.tree_flatten(updates)
  got, want = paths(updates), paths(prior_state.omega)
  omega = jax.tree_util.tree_leaves(prior_state.omega)
  lined_up = len(got) == len(want) and all(
      (g == w or g.endswith("/" + w)) and jnp.shape(u) == jnp.shape(o)
      for g, w, u, o in zip(got, want, leaves, omega))
  if not lined_up:
    raise ValueError(f"{where}: the masked updates are {_describe(updates)}; expected the "
                     f"architecture scalars of prior_state, {_describe(prior_state.omega)} "
                     f"(select them with mask=...)")
  scalars = jax.tree_util.tree_leaves(params)
  return leaves, treedef, scalars, omega, jax.tree_util.tree_leaves(prior_state.keep)


def _masked(inner, mask):
  return inner if mask is None else optax.masked(inner, mask)


def l1_penalty(lambda_w: float, mask=None) -> optax.GradientTransformationExtraArgs:
  """Eq. 16's sparsity term λ_w Σ ω|w| as a gradient transformation: adds its
  gradient λ_w·ω·sign(w) to the updates of the kept architecture scalars (0
  for pruned ones), as `jax.grad` of `penalty` would. ω comes from the
  `HardState` passed to each update as `prior_state` (1 before the first HARD
  update); `mask` selects the scalars (module docstring). Place it before the
  optimiser in `optax.chain`."""
  if lambda_w <= 0:
    raise ValueError(f"l1_penalty: lambda_w must be > 0, got {lambda_w}")

  def update_fn(updates, state, params=None, *, prior_state=None, **extra_args):
    del extra_args
    leaves, treedef, scalars, omega, keep = _selected("l1_penalty", updates, params,
                                                      prior_state)
    new = [(u + jnp.where(k, lambda_w * om * jnp.sign(w), 0)).astype(jnp.result_type(u))
           for u, w, om, k in zip(leaves, scalars, omega, keep)]
    return treedef.unflatten(new), state

  return _masked(optax.GradientTransformationExtraArgs(
      lambda params: optax.EmptyState(), update_fn), mask)


def zero_pruned(mask=None) -> optax.GradientTransformationExtraArgs:
  """`apply_masks` as a gradient transformation: the update of a pruned scalar
  becomes −w, so it is 0 after `optax.apply_updates` and stays 0 (SPEC §3
  step 4: a pruned scalar is removed for good); kept scalars' updates pass
  unchanged. The prune flags come from the `HardState` passed to each update
  as `prior_state`; `mask` selects the scalars (module docstring). Place it
  last in `optax.chain`."""

  def update_fn(updates, state, params=None, *, prior_state=None, **extra_args):
    del extra_args
    leaves, treedef, scalars, _, keep = _selected("zero_pruned", updates, params, prior_state)
    new = [jnp.where(k, u, -w).astype(jnp.result_type(u))
           for u, w, k in zip(leaves, scalars, keep)]
    return treedef.unflatten(new), state

  return _masked(optax.GradientTransformationExtraArgs(
      lambda params: optax.EmptyState(), update_fn), mask)
