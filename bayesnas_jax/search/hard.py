"""The HARD-prior step between rounds (Algorithm 1 steps 3–4, eqs. 17–20).

Works on the architecture-scalar tree of a cell-based space: per cell type,
`origin` [n, E] and `ops` [n, E, O] over the n stacked cells. With grouping
"cell_type" the same (edge, op) across the stack is one group (eq. 21): C stays
per member, ω, s, γ and the keep decision are per group. With grouping "none"
every scalar is its own group (eq. 16).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import prior
from bayesnas_jax.prior import RANK_BY, evidence_slope, rank_score, score_noise  # pylint: disable=unused-import
from bayesnas_jax.spaces.cell import CellSpec

GROUPINGS = ("cell_type", "none")
ZERO_CURVATURE = ("keep", "prune")
PRUNE_RULES = ("entropy", "evidence")
LAMBDA_RAMPS = ("none", "linear")


def lambda_factor(ramp, round_, rounds):
  """The factor on λ_w of round `round_` (0-based) of `rounds`: 1, or (t+1)/T
  for the linear ramp (the first rounds prune only what the data clearly do
  not support; the last uses λ_w itself)."""
  if ramp not in LAMBDA_RAMPS:
    raise ValueError(f"config.search.lambda_ramp: expected one of {LAMBDA_RAMPS}, got "
                     f"{ramp!r}")
  return 1.0 if ramp == "none" else (round_ + 1) / max(rounds, 1)


def group_shape(arch, grouping):
  """Shapes of the per-group state: [E], [E, O] per type, or per member."""
  def shape(a):
    return a.shape[1:] if grouping == "cell_type" else a.shape
  return jax.tree_util.tree_map(shape, arch)


def init_prior(arch, grouping):
  """γ(0) = ω(0) = 1 and everything kept (Algorithm 1 initialisation)."""
  if grouping not in GROUPINGS:
    raise ValueError(f"config.search.grouping: expected one of {GROUPINGS}, got "
                     f"{grouping!r}")
  def ones(a):
    return jnp.ones(a.shape[1:] if grouping == "cell_type" else a.shape, a.dtype)
  gamma = jax.tree_util.tree_map(ones, arch)
  keep = jax.tree_util.tree_map(lambda g: jnp.ones(g.shape, bool), gamma)
  return prior.HardState(gamma=gamma, omega=gamma, keep=keep,
                         rounds=jnp.zeros((), jnp.int32), score=gamma,
                         score_se=jax.tree_util.tree_map(jnp.zeros_like, gamma),
                         alive_before=keep)


def network_masks(keep, arch):
  """0/1 masks shaped like the architecture scalars (groups broadcast)."""
  return jax.tree_util.tree_map(lambda k, a: jnp.broadcast_to(k, a.shape).astype(a.dtype),
                                keep, arch)


@functools.partial(jax.jit, static_argnames=("spec", "lambda_w", "grouping", "dependency",
                                             "threshold", "lambda_w_origin", "rank_by",
                                             "zero_curvature", "zero_tolerance",
                                             "prune_rule", "keep_last"))
def hard_update(arch, curvature, state, *, spec, lambda_w: float, grouping: str,
                dependency: str, threshold: float = prior.PRUNE_THRESHOLD,
                lambda_w_origin: float = 0.0, rank_by: str = "gamma",
                zero_curvature: str = "keep", zero_tolerance: float = 1e-6,
                prune_rule: str = "entropy", curvature_se=None, keep_last: bool = False):
  """One prior update. Returns (new `HardState`, per-type record arrays, clamped count).

  `spec` is the `CellSpec` of every cell type, or a tuple of (type, CellSpec)
  pairs (`spaces.cell_specs(space)`). `lambda_w_origin` > 0 is the origin
  scalars' own λ_w (the ops keep `lambda_w`). `rank_by` picks the score the
  derivation ranks by (`rank_score`). `zero_curvature`: a group whose every
  member has H ≤ zero_tolerance·λ_w is one the data do not inform; "keep"
  applies eqs. 18–19 literally (ω → its floor, s and γ → huge: never pruned),
  "prune" sets its switch to 0 (γ = 0: pruned), as sparse Bayesian learning
  prunes a basis function with no evidence for it. `prune_rule`: "entropy"
  keeps a scalar while γ > threshold (the paper, eq. 20 and §3 step 4);
  "evidence" while `evidence_slope` > 0 (the marginal likelihood peaks at
  γ > 0). `curvature_se`: the standard error of the averaged curvature (same
  tree; None: 0), from which each group's score gets its noise. `keep_last`
  (grouping "cell_type"): a node whose every input pair the rule prunes in this
  update keeps the best-scored of the pairs alive before it, with its origin (a
  space where every node needs an input: the recurrent cell); the record
  `restored` marks such a pair. Record arrays
  per cell type and part: w, H (clamped), H_se, C per member; omega, switch,
  gamma, evidence, score, score_se, keep per group.
  """
  if prune_rule not in PRUNE_RULES:
    raise ValueError(f"config.search.prune_rule: expected one of {PRUNE_RULES}, got "
                     f"{prune_rule!r}")
  if keep_last and grouping != "cell_type":
    raise ValueError(f"config.search.keep_last: needs grouping 'cell_type', got {grouping!r}")
  if curvature_se is None:
    curvature_se = jax.tree_util.tree_map(jnp.zeros_like, curvature)
  specs = dict(spec) if not isinstance(spec, CellSpec) else {kind: spec for kind in arch}
  new_state = {name: {} for name in ("gamma", "omega", "score", "score_se", "keep",
                                     "alive_before")}
  records = {}
  clamped = 0
  lambdas = {"origin": lambda_w_origin or lambda_w, "ops": lambda_w}
  for kind in arch:
    spec = specs[kind]
    w = arch[kind]
    curv = {}
    for part in ("origin", "ops"):
      curv[part], count = prior.clamp_curvature(curvature[kind][part])
      clamped = clamped + count
    gamma = state.gamma[kind]
    if grouping == "cell_type":
      upd = {part: prior.group_update(w[part], curv[part], gamma[part][None], lambdas[part],
                                      axis=0) for part in ("origin", "ops")}
    else:
      upd = {part: prior.update(w[part], curv[part], gamma[part], lambdas[part])
             for part in ("origin", "ops")}
    switches = {}
    for part in ("origin", "ops"):
      s = upd[part].switch
      if zero_curvature == "prune":
        silent = curv[part] <= zero_tolerance * lambdas[part]
        if grouping == "cell_type":
          silent = jnp.all(silent, axis=0)
        s = jnp.where(silent, jnp.zeros_like(s), s)
      switches[part] = s
    if grouping == "cell_type":
      g_origin, g_ops = prior.cell_gamma(switches["origin"], switches["ops"],
                                         spec.edges, spec.num_inputs, dependency)
    else:
      g_origin, g_ops = jax.vmap(
          lambda s0, s: prior.cell_gamma(s0, s, spec.edges, spec.num_inputs, dependency)
      )(switches["origin"], switches["ops"])
    evidence = {part: evidence_slope(w[part], curv[part], lambdas[part], grouping)
                for part in ("origin", "ops")}
    if prune_rule == "entropy":
      survive = {"origin": prior.keep_mask(g_origin, threshold),
                 "ops": prior.keep_mask(g_ops, threshold)}
    else:
      survive = {part: evidence[part] > 0 for part in ("origin", "ops")}
      if zero_curvature == "prune":
        survive = {part: survive[part] & (switches[part] > 0) for part in survive}
    keep_origin = survive["origin"] & state.keep[kind]["origin"]
    keep_ops = survive["ops"] & state.keep[kind]["ops"]
    restored = jnp.zeros(keep_ops.shape, bool)
    if keep_last:
      alive = state.keep[kind]["ops"] & state.keep[kind]["origin"][:, None]
      score_ops = rank_score(rank_by, w["ops"], curv["ops"], g_ops, grouping)
      for node in spec.intermediate:
        into = np.asarray(spec.in_edges(node))
        kept_any = jnp.any(keep_ops[into] & keep_origin[into][:, None])
        candidates = jnp.where(alive[into], score_ops[into], -jnp.inf)
        best = jnp.arange(candidates.size).reshape(candidates.shape) == jnp.argmax(candidates)
        restore = best & alive[into] & ~kept_any
        restored = restored.at[into].set(restore)
        keep_ops = keep_ops.at[into].set(keep_ops[into] | restore)
        keep_origin = keep_origin.at[into].set(keep_origin[into] | jnp.any(restore, axis=1))
    if grouping == "cell_type":
      keep_origin, keep_ops, _ = prior.cell_keep(keep_origin, keep_ops, spec.edges,
                                                 spec.num_inputs)
    else:
      keep_origin, keep_ops, _ = jax.vmap(
          lambda o, p: prior.cell_keep(o, p, spec.edges, spec.num_inputs))(keep_origin,
                                                                          keep_ops)
    gammas = {"origin": g_origin, "ops": g_ops}
    keeps = {"origin": keep_origin, "ops": keep_ops}
    for name in new_state:
      new_state[name][kind] = {}
    records[kind] = {}
    for part in ("origin", "ops"):
      score = rank_score(rank_by, w[part], curv[part], gammas[part], grouping)
      se = score_noise(rank_by, w[part], curvature_se[kind][part], grouping)
      new_state["gamma"][kind][part] = gammas[part]
      new_state["score_se"][kind][part] = se
      new_state["alive_before"][kind][part] = state.keep[kind][part]
      new_state["omega"][kind][part] = upd[part].omega
      new_state["score"][kind][part] = score
      new_state["keep"][kind][part] = keeps[part]
      records[kind][part] = {"w": w[part], "H": curv[part],
                             "H_se": curvature_se[kind][part],
                             "evidence": evidence[part], "score_se": se,
                             "C": upd[part].posterior_variance, "omega": upd[part].omega,
                             "s": switches[part], "gamma": gammas[part], "score": score,
                             "kept": keeps[part]}
      if keep_last:
        records[kind][part]["restored"] = (restored if part == "ops" else
                                           jnp.zeros(keeps[part].shape, bool))
  return prior.HardState(rounds=state.rounds + 1, **new_state), records, clamped
