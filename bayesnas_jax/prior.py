"""The hierarchical ARD (HARD) prior of BayesNAS: eqs. 5–8 and 17–20.

All functions are pure and jittable. Per architecture scalar (or per group of
scalars, eq. 21) the state is the scalar w, its prior variance γ and the
re-weighting coefficient ω. After a round of training with curvature H:

* eq. 17, posterior variance:  C = (1/γ + H/λ_w)⁻¹
* eq. 18, re-weighting:        ω = sqrt(γ − C)/γ = sqrt(H / (λ_w + γH))
  group form:                  ω_g = sqrt(Σ_m (γ_m − C_m)/γ_m²)
* eq. 19, switch:              s = |w|/ω;  group form s_g = ‖w_g‖₂/ω_g
* eq. 20, prior variance γ from the switches by the dependency rule
  (eqs. 6/8, SPEC §2), with "OR" a sum and "AND" the harmonic combination
  h(a, b) = (1/a + 1/b)⁻¹.
* pruning: keep iff the entropy ½ ln(2πeγ) > 0, i.e. γ > 1/(2πe).

H enters divided by the noise variance λ_w (as in the authors' released code).
Negative curvature (non-convex loss) is clamped at 0; ω is floored at
`omega_floor` so s stays finite when H = 0. No NaN or Inf comes out for any
finite input.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

PRUNE_THRESHOLD = 1.0 / (2.0 * math.pi * math.e)  # ≈ 0.0585
OMEGA_FLOOR = 1e-12
DEPENDENCIES = ("full", "edge_only")


@flax.struct.dataclass
class HardState:
  """The HARD prior's state between rounds, the one type every caller shares.

  `gamma`, `omega` and `keep` are pytrees of the same structure: per architecture
  scalar (`hard_prior`), per group of a cell's scalars (`search.hard`,
  `{kind: {"origin", "ops"}}`) or per structural group of a layer
  (`compress.groups`, `{group kind: array}`). γ is the prior variance (eq. 20),
  ω the penalty's re-weighting (eq. 18), `keep` whether the scalar (group) is
  still in the network; `rounds` counts the updates so far. A search also
  records, per group, what its derivation ranks by: `score` (`rank_score`),
  `score_se` (its noise, `score_noise`) and `alive_before` (`keep` before the
  last update); None where a caller does not rank.
  """
  gamma: Any
  omega: Any
  keep: Any
  rounds: Any
  score: Any = None
  score_se: Any = None
  alive_before: Any = None

  @property
  def rank(self):
    """What a derivation ranks by: `score` where recorded, γ otherwise."""
    return self.gamma if self.score is None else self.score


class PriorUpdate(NamedTuple):
  posterior_variance: jnp.ndarray  # C, eq. 17
  omega: jnp.ndarray  # ω, eq. 18
  switch: jnp.ndarray  # s, eq. 19


def clamp_curvature(curvature):
  """Clamps negative curvature at 0; returns (clamped, number clamped)."""
  curvature = jnp.asarray(curvature)
  return jnp.maximum(curvature, 0), jnp.sum(curvature < 0)


def posterior_variance(gamma, curvature, lambda_w):
  """Eq. 17: C = (1/γ + H/λ_w)⁻¹ = γλ_w / (λ_w + γH), with H clamped at 0."""
  curvature = jnp.maximum(curvature, 0)
  gamma = jnp.maximum(gamma, 0)
  return gamma * lambda_w / (lambda_w + gamma * curvature)


def _omega_squared_over_gamma_squared(gamma, curvature, lambda_w):
  """(γ − C)/γ² = H/(λ_w(λ_w + γH))·λ_w, written without dividing by γ."""
  curvature = jnp.maximum(curvature, 0)
  gamma = jnp.maximum(gamma, 0)
  return curvature / (lambda_w + gamma * curvature)


def omega(gamma, curvature, lambda_w, omega_floor=OMEGA_FLOOR):
  """Eq. 18: ω = sqrt(γ − C)/γ, element-wise."""
  return jnp.maximum(
      jnp.sqrt(_omega_squared_over_gamma_squared(gamma, curvature, lambda_w)), omega_floor)


def switch(w, omega_):
  """Eq. 19: s = |w|/ω."""
  return jnp.abs(w) / omega_


def update(w, curvature, gamma, lambda_w, omega_floor=OMEGA_FLOOR) -> PriorUpdate:
  """Eqs. 17–19 element-wise on arrays of any (broadcastable) shape: (C, ω, s)."""
  c = posterior_variance(gamma, curvature, lambda_w)
  om = omega(gamma, curvature, lambda_w, omega_floor)
  return PriorUpdate(c, om, switch(w, om))


def group_update(w, curvature, gamma, lambda_w, axis=0,
                 omega_floor=OMEGA_FLOOR) -> PriorUpdate:
  """Group form (eq. 21): members along `axis` share one ω_g and s_g.

  C stays per member; ω_g = sqrt(Σ_m (γ_m − C_m)/γ_m²) and s_g = ‖w_g‖₂/ω_g have
  the member axis reduced.
  """
  gamma = jnp.broadcast_to(gamma, jnp.shape(curvature))
  c = posterior_variance(gamma, curvature, lambda_w)
  om = jnp.sqrt(jnp.sum(_omega_squared_over_gamma_squared(gamma, curvature, lambda_w),
                        axis=axis))
  om = jnp.maximum(om, omega_floor)
  norm = jnp.sqrt(jnp.sum(jnp.square(w), axis=axis))
  return PriorUpdate(c, om, norm / om)


def harmonic(*terms):
  """h(a, b, …) = (Σ 1/a)⁻¹, the "AND" of switches: 0 if any term is 0, and an
  infinite term (a network input's S_in) drops out."""
  inverse_sum = sum(1.0 / jnp.asarray(t) for t in terms)
  return 1.0 / inverse_sum


def _nonnegative(x):
  x = jnp.asarray(x)
  return jnp.where(x <= 0, jnp.zeros_like(x), x)


def cell_gamma(origin_switch, op_switch, edges: Sequence[tuple[int, int]], num_inputs: int,
               dependency: str = "full"):
  """Eq. 20 for one cell: γ of every origin and op scalar from the switches.

  Args:
    origin_switch: s⁰ per edge, shape [E].
    op_switch: s per edge and op, shape [E, O].
    edges: (from_node, to_node) per edge, nodes numbered with the cell inputs
      first (0 … num_inputs − 1), edges listed in topological order of to_node.
    num_inputs: input nodes, whose incoming information S_in is ∞.
    dependency: "full" (SPEC §2: origin γ⁰ = h(S_in(j), s⁰), op
      γ = (1/S_in(j) + 1/s⁰ + 1/s)⁻¹) or "edge_only" (the S_in term dropped).

  Returns:
    (origin_gamma [E], op_gamma [E, O]).
  """
  if dependency not in DEPENDENCIES:
    raise ValueError(f"dependency: expected one of {DEPENDENCIES}, got {dependency!r}")
  # A switch is ≥ 0 by construction (|w|/ω); a negative (or −0) one is read as "off"
  # so that 1/a + 1/b cannot cancel to 0 (γ = ∞) or give −∞ + ∞ (NaN).
  origin_switch = _nonnegative(origin_switch)
  op_switch = _nonnegative(op_switch)
  edge_path = harmonic(origin_switch[:, None], op_switch)  # h(s⁰, s) per (edge, op)
  if dependency == "edge_only":
    return origin_switch, edge_path
  src = np.asarray([e[0] for e in edges])
  dst = np.asarray([e[1] for e in edges])
  num_nodes = int(max(dst.max(initial=0), src.max(initial=0))) + 1
  # S_in(j) = Σ_{i<j} Σ_o h(s⁰_ij, s_ij^o); ∞ for input nodes.
  incoming = jnp.zeros((num_nodes,), edge_path.dtype).at[dst].add(jnp.sum(edge_path, -1))
  is_input = np.arange(num_nodes) < num_inputs
  information = jnp.where(is_input, jnp.inf, incoming)
  source_information = information[src]
  origin_gamma = harmonic(source_information, origin_switch)
  op_gamma = harmonic(source_information[:, None], origin_switch[:, None], op_switch)
  return origin_gamma, op_gamma


def keep_mask(gamma, threshold=PRUNE_THRESHOLD):
  """Entropy pruning: keep iff ½ ln(2πeγ) > 0, i.e. γ > 1/(2πe)."""
  return gamma > threshold


def cell_keep(origin_keep, op_keep, edges: Sequence[tuple[int, int]], num_inputs: int):
  """Structural consequences of pruning in one cell (SPEC §3 step 4).

  A pruned origin removes all ops of its edge; a node left with no kept input
  removes its out-edges. Edges must be in topological order of to_node.
  Returns (origin_keep [E], op_keep [E, O], node_alive [num_nodes]).
  """
  origin_keep = jnp.asarray(origin_keep)
  op_keep = jnp.asarray(op_keep) & origin_keep[:, None]
  num_nodes = max(max(e) for e in edges) + 1
  alive = [True] * num_inputs + [False] * (num_nodes - num_inputs)
  alive = jnp.asarray(alive)
  for node in range(num_inputs, num_nodes):
    into = [i for i, (_, dst) in enumerate(edges) if dst == node]
    for i in into:
      source_alive = alive[edges[i][0]]
      op_keep = op_keep.at[i].set(op_keep[i] & source_alive)
    alive = alive.at[node].set(jnp.any(op_keep[np.asarray(into)]) if into else False)
  origin_keep = jnp.any(op_keep, axis=-1)
  return origin_keep, op_keep, alive


def entropy(gamma):
  """½ ln(2πeγ), the entropy of N(0, γ) (−∞ for γ = 0 is returned as a large
  negative finite number)."""
  gamma = jnp.asarray(gamma)
  if not jnp.issubdtype(gamma.dtype, jnp.floating):
    gamma = gamma.astype(jnp.result_type(float))
  tiny = jnp.asarray(jnp.finfo(gamma.dtype).tiny, gamma.dtype)
  return 0.5 * jnp.log(2 * math.pi * math.e * jnp.maximum(gamma, tiny))


RANK_BY = ("gamma", "saliency", "curvature")


def evidence_slope(w, curvature, lambda_w, grouping):
  """Whether the data support a group: the slope at γ = 0 of its log marginal
  likelihood in the local quadratic model,

      ∂/∂γ Σ_{m∈g} log N(w_m; 0, γ + λ_w/H_m) |_{γ=0} ∝ Σ_m H_m (H_m w_m² − λ_w).

  ≤ 0: the evidence peaks at γ = 0 and the group goes (Tipping & Faul's test;
  for one scalar: w²H ≤ λ_w). w²H is unchanged when a scale the batch norms
  cancel moves between w and H (w → cw, H → H/c²), so unlike γ of eq. 19 the
  decision does not depend on how far the L1 penalty shrank w."""
  h = jnp.maximum(curvature, 0)
  slope = h * (h * jnp.square(w) - lambda_w)
  return jnp.sum(slope, axis=0) if grouping == "cell_type" else slope


def score_noise(rank_by, w, curvature_se, grouping):
  """Standard error of `rank_score` from the curvature's batch-to-batch noise
  (w held fixed): sqrt(Σ_m (w_m² se(H_m))²) for the saliency, sqrt(Σ se²) for
  the curvature; 0 for γ (no noise model: its margins are not rated)."""
  if rank_by == "gamma":
    return jnp.zeros(curvature_se.shape[1:] if grouping == "cell_type" else
                     curvature_se.shape, curvature_se.dtype)
  se = curvature_se if rank_by == "curvature" else jnp.square(w) * curvature_se
  var = jnp.square(se)
  return jnp.sqrt(jnp.sum(var, axis=0) if grouping == "cell_type" else var)


def rank_score(rank_by, w, curvature, gamma, grouping):
  """The per-group score a derivation ranks surviving ops by (larger first).

  "gamma": the prior variance γ of eq. 20 (the paper's rule).
  "saliency": Σ_m w_m² H_m over the group's members, the loss increase of
  removing the group in the local quadratic model (OBD). In the evidence
  framework it is the sufficient statistic of keeping a scalar: with prior
  N(0, γ) and data curvature H/λ_w, the marginal likelihood is maximised at
  γ* = max(0, w² − λ_w/H) and the evidence gained by keeping the scalar,
  ½(q − 1 − ln q) with q = w²H/λ_w, grows with w²H. Unlike |w| or γ it does not
  change when an op's output is rescaled (w → w/c, H → c²H), and the order it
  gives does not depend on λ_w.
  "curvature": Σ_m H_m, the data's precision for the scalar (the saliency the
  op would have at w = 1, the value Algorithm 1 step 5 gives every survivor);
  unlike w²H it does not read how far the L1 penalty has shrunk w.
  """
  if rank_by == "gamma":
    return gamma
  h = jnp.maximum(curvature, 0)
  value = h if rank_by == "curvature" else jnp.square(w) * h
  return jnp.sum(value, axis=0) if grouping == "cell_type" else value


def conditional_evidence_keep(w, block, keep, groups, num_groups: int, lambda_w: float,
                              ridge: float = 1e-6):
  """The evidence test of each kept scalar given the other kept members of its
  group, applied one scalar at a time (sparse Bayesian learning's sequential
  re-estimation, Tipping & Faul 2003, in the local quadratic model).

  `evidence_slope` asks, per scalar, whether w²H > λ_w with every other scalar
  held fixed. Two scalars whose ops compute nearly the same feature both pass
  it: each alone explains the loss, yet either can stand in for the other. With
  the curvature block G of a group (the Gauss–Newton matrix of its scalars, not
  only the diagonal), the curvature of scalar i when the group's other kept
  scalars may re-fit is the Schur complement 1/[G_A⁻¹]_ii over the kept set A
  (Optimal Brain Surgeon), and the test becomes

      w_i² / [G_A⁻¹]_ii > λ_w.

  Each pass prunes, in every group with two or more kept members, the member
  with the smallest such evidence if it fails the test, moves the others to
  their re-fitted values w ← w − (w_i/[G_A⁻¹]_ii)·G_A⁻¹e_i, and repeats until
  every kept member passes. A group's last member is never pruned here (the
  diagonal rule decides it).

  Args:
    w: [n] scalars; block: [n, n] curvature (entries between groups are
      ignored); keep: [n] bool, the members alive before the test; groups: [n]
      int group ids in [0, num_groups); lambda_w: the noise variance of eq. 17.
    ridge: G_A gets ridge·mean(diag G_A) on its diagonal (a sampled block can be
      singular).

  Returns (keep, re-fitted w, conditional evidence w²/[G_A⁻¹]_ii of the final
  kept set, 0 where pruned).
  """
  w = jnp.asarray(w)
  n = w.shape[0]
  dtype = jnp.result_type(w.dtype, jnp.float32)
  w = w.astype(dtype)
  groups = jnp.asarray(groups, jnp.int32)
  same = groups[:, None] == groups[None, :]
  g = jnp.asarray(block, dtype)
  g = jnp.where(same, 0.5 * (g + g.T), 0.0)
  keep = jnp.asarray(keep, bool)
  alive_diag = jnp.where(keep, jnp.maximum(jnp.diag(g), 0), 0)
  scale = jnp.sum(alive_diag) / jnp.maximum(jnp.sum(keep), 1)
  jitter = ridge * scale + jnp.finfo(dtype).tiny
  index = jnp.arange(n, dtype=jnp.int32)

  def conditional(keep_):
    m = keep_.astype(dtype)
    ga = g * m[:, None] * m[None, :] + jnp.diag(1.0 - m) + jitter * jnp.eye(n, dtype=dtype)
    inv = jnp.linalg.inv(ga)
    return inv, jnp.diag(inv)

  def body(_, carry):
    keep_, w_ = carry
    inv, d = conditional(keep_)
    evidence = jnp.square(w_) / d
    count = jnp.zeros((num_groups,), jnp.int32).at[groups].add(keep_.astype(jnp.int32))
    eligible = keep_ & (count[groups] >= 2)
    candidate = jnp.where(eligible, evidence, jnp.inf)
    lowest = jnp.full((num_groups,), jnp.inf, dtype).at[groups].min(candidate)
    failing = eligible & (candidate == lowest[groups]) & (candidate <= lambda_w)
    first = jnp.full((num_groups,), n, jnp.int32).at[groups].min(
        jnp.where(failing, index, n))
    prune = failing & (index == first[groups])
    coefficient = jnp.where(prune, w_ / d, 0.0)
    w_ = jnp.where(prune, 0.0, w_ - inv @ coefficient) * keep_
    return keep_ & ~prune, w_

  keep, w = jax.lax.fori_loop(0, n, body, (keep, w * keep))
  _, d = conditional(keep)
  return keep, w, jnp.where(keep, jnp.square(w) / d, 0.0)
