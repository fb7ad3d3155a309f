"""Weight groups and their HARD prior for structured compression (thesis (T) App. A).

A group is a set of weights of one layer that is kept or removed together (thesis
Fig. A-1, after Wen et al. 2016). For a dense kernel [in, out]:

  "row"     an input unit     W[i, :]      (group index i)
  "column"  an output unit    W[:, j]
  "shape"   a single weight   W[i, j]

and for a convolution kernel HWIO [kh, kw, in, out]:

  "filter"  an output channel W[:, :, :, o]
  "channel" an input channel  W[:, :, c, :]
  "shape"   one kernel position across filters  W[h, w, c, :]

A layer may use several kinds; each has its own prior state (γ, ω, keep per
group) and a weight survives only if every group it belongs to does. Algorithm 2,
per layer l and kind, after a round with curvature H (the weights' diagonal, same
one-pass engine as the architecture scalars):

  eq. A-3  C = (1/γ + H/λ)⁻¹ per weight (γ its group's prior variance)
  eq. A-4  α = 1/γ − C/γ²  = H/(λ + γH)
  eq. A-5  ω_g = sqrt(Σ_{m∈g} α_m)           (the group form of eq. 18)
  eq. A-2  γ_g = ‖W_g‖₂ / ω_g                (eq. 19, the switch, as the next γ)
  prune g when γ_g ≤ 1/(2πe)

and the penalty of eq. A-1 is Σ_l λ^l Σ_kinds Σ_g ω_g ‖W_g‖₂ (a re-weighted group
lasso). All functions are pure and jittable.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bayesnas_jax import prior

KINDS = {2: ("row", "column", "shape"), 4: ("filter", "channel", "shape")}
# Member axes (reduced within a group) per kernel rank and kind.
MEMBER_AXES = {
    (2, "row"): (1,), (2, "column"): (0,), (2, "shape"): (),
    (4, "filter"): (0, 1, 2), (4, "channel"): (0, 1, 3), (4, "shape"): (3,),
}
PRUNE_THRESHOLD = prior.PRUNE_THRESHOLD


def check_kind(kind: str, ndim: int, field: str):
  """One-line ValueError naming `field` if `kind` is not a group of a rank-`ndim` kernel."""
  if ndim not in KINDS:
    raise ValueError(f"{field}: groups are defined for dense [in, out] and conv HWIO "
                     f"kernels, got a kernel of rank {ndim}")
  if kind not in KINDS[ndim]:
    layer = "dense" if ndim == 2 else "conv"
    raise ValueError(f"{field}: {kind!r} is not a {layer} group; expected one of "
                     f"{', '.join(KINDS[ndim])}")


def _axes(kind, ndim):
  return MEMBER_AXES[(ndim, kind)]


def group_shape(kernel_shape, kind):
  """Shape of the per-group arrays, with reduced member axes kept as size 1."""
  axes = _axes(kind, len(kernel_shape))
  return tuple(1 if a in axes else d for a, d in enumerate(kernel_shape))


def group_sum(x, kind):
  return jnp.sum(x, axis=_axes(kind, x.ndim), keepdims=True)


def group_norm(w, kind):
  """‖W_g‖₂ per group, with a gradient of 0 (not NaN) at W_g = 0."""
  squares = group_sum(jnp.square(w), kind)
  positive = squares > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


def init_state(kernel_shape, kinds) -> prior.HardState:
  """γ = 1, ω = 1, every group kept (Algorithm 2's initialisation): one
  `HardState` per layer, each field {group kind: per-group array}."""
  ones = {kind: jnp.ones(group_shape(kernel_shape, kind)) for kind in kinds}
  return prior.HardState(gamma=ones, omega=ones,
                         keep={kind: jnp.ones(v.shape, bool) for kind, v in ones.items()},
                         rounds=jnp.zeros((), jnp.int32))


def mask(kernel_shape, state):
  """1 where every group the weight belongs to is kept."""
  out = jnp.ones(kernel_shape, bool)
  for keep in state.keep.values():
    out = out & jnp.broadcast_to(keep, kernel_shape)
  return out


def penalty(w, state, lambda_):
  """λ Σ_kinds Σ_g ω_g ‖W_g‖₂ over kept groups (eq. A-1)."""
  total = 0.0
  for kind, keep in state.keep.items():
    total = total + jnp.sum(jnp.where(keep, state.omega[kind] * group_norm(w, kind), 0.0))
  return lambda_ * total


PRUNE_RULES = ("entropy", "evidence")


def evidence_slope(w, curvature, kind, lambda_):
  """Whether the data support the group: the slope at γ = 0 of the group's log
  marginal likelihood in the local quadratic model,

      ∂/∂γ Σ_{m∈g} log N(w_m; 0, γ + v_m) |_{γ=0} ∝ Σ_m H_m·(H_m w_m² − λ),

  with v_m = λ/H_m the likelihood's variance for member m. ≤ 0: the evidence
  peaks at γ = 0 and the group goes (Tipping & Faul's pruning test). Members
  weigh in by their precision H_m, so a member the data barely see (H_m ≈ 0)
  barely counts, and for one scalar the test is w²H > λ. Unlike γ of eq. A-2 it
  does not depend on the weights' scale matching the 1/(2πe) threshold."""
  h = jnp.maximum(curvature, 0)
  return group_sum(h * (h * jnp.square(w) - lambda_), kind)


def update(w, curvature, state, lambda_, threshold=PRUNE_THRESHOLD, rule="entropy"):
  """Eqs. A-2–A-5 and pruning for one layer; returns the new `HardState` and, per
  kind, the group curvature Σ_{m∈g} H_m (for records). `rule`: "entropy" prunes
  when γ ≤ threshold (the thesis), "evidence" when `evidence_slope` ≤ 0."""
  if rule not in PRUNE_RULES:
    raise ValueError(f"prune rule: expected one of {PRUNE_RULES}, got {rule!r}")
  h = jnp.maximum(curvature, 0)
  new = {"gamma": {}, "omega": {}, "keep": {}}
  group_curvature = {}
  for kind in state.keep:
    # Eqs. are the group form of eqs. 17–19 over the member axes.
    shape = group_shape(w.shape, kind)
    grouped = prior.group_update(w, h, state.gamma[kind], lambda_, axis=_axes(kind, w.ndim))
    omega = jnp.reshape(grouped.omega, shape)
    gamma_new = jnp.reshape(grouped.switch, shape)
    if rule == "entropy":
      survives = prior.keep_mask(gamma_new, threshold)
    else:
      survives = evidence_slope(w, curvature, kind, lambda_) > 0
    new["gamma"][kind] = gamma_new
    new["omega"][kind] = omega
    new["keep"][kind] = state.keep[kind] & survives
    group_curvature[kind] = group_sum(h, kind)
  return prior.HardState(rounds=state.rounds + 1, **new), group_curvature


def tree_update(kernels, curvatures, states, lambdas, threshold=PRUNE_THRESHOLD,
                rule="entropy"):
  """`update` over a dict of layers {name: kernel}; returns (states, group curvature)."""
  new, group_curvature = {}, {}
  for name in states:
    new[name], group_curvature[name] = update(kernels[name], curvatures[name], states[name],
                                              lambdas[name], threshold, rule)
  return new, group_curvature


tree_update_jit = jax.jit(tree_update, static_argnames=("threshold", "rule"))
