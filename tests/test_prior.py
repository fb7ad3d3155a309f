"""Tests of the HARD prior (bayesnas_jax/prior.py): the element-wise and group updates
(eqs. 17–19, 21) and the dependency rule (eqs. 6/8, 20; SPEC §2). Pruning,
clamping and robustness are in test_prior_pruning.py.

Every expected number below is worked out by hand in the comments (fractions,
square roots), not read back from the code. tests/conftest.py enables float64.
"""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import prior
from tests.prior_support import (EDGE_ONLY_OP, EDGES, FULL_OP, FULL_ORIGIN, NUM_INPUTS, S0,
                                 SOP, close)

FLOOR = prior.OMEGA_FLOOR
INF = math.inf


# ---------------------------------------------------------------------------
# Element-wise update, eqs. 17–19.
#
# Case A: γ=1, H=3, λ=1, w=2
#   C = (1/1 + 3/1)^-1 = 1/4;  γ−C = 3/4;  ω = sqrt(3/4)/1 = sqrt(3)/2;
#   s = 2 / (sqrt(3)/2) = 4/sqrt(3).
# Case B: γ=2, H=1, λ=1/2, w=−3
#   C = (1/2 + 1/(1/2))^-1 = (5/2)^-1 = 2/5;  γ−C = 8/5;  ω = sqrt(8/5)/2 = sqrt(2/5);
#   s = 3 / sqrt(2/5) = 3 sqrt(5/2).
# Case C: γ=4, H=12, λ=2, w=1/2
#   C = (1/4 + 6)^-1 = 4/25;  γ−C = 96/25;  ω = sqrt(96/25)/4 = sqrt(96)/20 = sqrt(6)/5;
#   s = (1/2)/(sqrt(6)/5) = 5/(2 sqrt(6)).
# Case D: γ=1/2, H=0, λ=1, w=0
#   C = γ = 1/2;  ω = 0 → floored at OMEGA_FLOOR;  s = 0/floor = 0.
# Case E: γ=1, H=−5 (negative curvature, clamped to 0), λ=1, w=7
#   C = 1;  ω = floor;  s = 7/floor.
# ---------------------------------------------------------------------------
CASES = {
    #      γ     H     λ    w      C       ω                s
    "A": (1.0, 3.0, 1.0, 2.0, 1 / 4, math.sqrt(3) / 2, 4 / math.sqrt(3)),
    "B": (2.0, 1.0, 0.5, -3.0, 2 / 5, math.sqrt(2 / 5), 3 * math.sqrt(5 / 2)),
    "C": (4.0, 12.0, 2.0, 0.5, 4 / 25, math.sqrt(6) / 5, 5 / (2 * math.sqrt(6))),
    "D": (0.5, 0.0, 1.0, 0.0, 1 / 2, FLOOR, 0.0),
    "E": (1.0, -5.0, 1.0, 7.0, 1.0, FLOOR, 7.0 / FLOOR),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_equations_17_18_19_scalar_hand_values(name):
  g, h, lam, w, c, om, s = CASES[name]
  close(prior.posterior_variance(g, h, lam), c)
  close(prior.omega(g, h, lam), om)
  close(prior.switch(w, om), s)
  upd = prior.update(jnp.asarray(w), jnp.asarray(h), jnp.asarray(g), lam)
  assert isinstance(upd, prior.PriorUpdate)
  assert upd.posterior_variance.shape == upd.omega.shape == upd.switch.shape == ()
  close(upd.posterior_variance, c)
  close(upd.omega, om)
  close(upd.switch, s)


def test_eq18_equals_definition_sqrt_gamma_minus_c_over_gamma():
  # ω is computed through H/(λ+γH); check it against the literal eq. 18 on a grid
  # where γ − C is well conditioned.
  gamma = np.array([0.3, 1.0, 2.5, 7.0])
  h = np.array([0.2, 3.0, 1.5, 40.0])
  lam = 0.7
  c = 1.0 / (1.0 / gamma + h / lam)
  close(prior.posterior_variance(gamma, h, lam), c)
  close(prior.omega(gamma, h, lam), np.sqrt(gamma - c) / gamma, rtol=1e-10)


def test_switch_is_abs_w_over_omega():
  # s = |w|/ω: sign of w does not matter.
  close(prior.switch(jnp.array([-2.0, 2.0, 0.0]), jnp.array([0.5, 0.5, 3.0])), [4.0, 4.0, 0.0])


def test_update_vector_shape_3():
  # λ = 1 for all three entries:
  #   γ=1, H=3,  w=2    → C=1/4;  (γ−C)/γ² = 3/4            → ω=sqrt3/2;   s=4/sqrt3
  #   γ=2, H=1,  w=−3   → C=(1/2+1)^-1=2/3; (4/3)/4 = 1/3    → ω=1/sqrt3;   s=3 sqrt3
  #   γ=4, H=12, w=1/2  → C=(1/4+12)^-1=4/49; (192/49)/16 = 12/49 → ω=sqrt12/7; s=7/(2 sqrt12)
  g = np.array([1.0, 2.0, 4.0])
  h = np.array([3.0, 1.0, 12.0])
  w = np.array([2.0, -3.0, 0.5])
  upd = prior.update(jnp.asarray(w), jnp.asarray(h), jnp.asarray(g), 1.0)
  assert upd.switch.shape == (3,)
  close(upd.posterior_variance, [1 / 4, 2 / 3, 4 / 49])
  close(upd.omega, [math.sqrt(3) / 2, 1 / math.sqrt(3), math.sqrt(12) / 7])
  close(upd.switch, [4 / math.sqrt(3), 3 * math.sqrt(3), 7 / (2 * math.sqrt(12))])


def test_update_matrix_shape_2x3_and_lambda():
  # λ = 2 for every entry.
  #   row 0: γ=1,   H=2,  w=1   → C=(1+1)^-1=1/2; (γ−C)/γ²=1/2  → ω=sqrt(1/2); s=sqrt2
  #          γ=2,   H=6,  w=−1  → C=(1/2+3)^-1=2/7; (2−2/7)/4 = (12/7)/4 = 3/7 → ω=sqrt(3/7);
  #                                s=sqrt(7/3)
  #          γ=1/2, H=0,  w=5   → C=1/2; ω=floor; s=5/floor
  #   row 1: γ=3,   H=2,  w=0   → C=(1/3+1)^-1=3/4; (3−3/4)/9 = (9/4)/9 = 1/4 → ω=1/2; s=0
  #          γ=1,   H=−1, w=1   → clamped: C=1; ω=floor; s=1/floor
  #          γ=1,   H=14, w=4   → C=(1+7)^-1=1/8; (1−1/8)/1 = 7/8 → ω=sqrt(7/8);
  #                                s=4 sqrt(8/7)
  gamma = np.array([[1.0, 2.0, 0.5], [3.0, 1.0, 1.0]])
  h = np.array([[2.0, 6.0, 0.0], [2.0, -1.0, 14.0]])
  w = np.array([[1.0, -1.0, 5.0], [0.0, 1.0, 4.0]])
  upd = prior.update(w, h, gamma, 2.0)
  assert upd.omega.shape == (2, 3)
  close(upd.posterior_variance, [[1 / 2, 2 / 7, 1 / 2], [3 / 4, 1.0, 1 / 8]])
  close(upd.omega, [[math.sqrt(1 / 2), math.sqrt(3 / 7), FLOOR],
                    [1 / 2, FLOOR, math.sqrt(7 / 8)]])
  close(upd.switch, [[math.sqrt(2), math.sqrt(7 / 3), 5 / FLOOR],
                     [0.0, 1 / FLOOR, 4 * math.sqrt(8 / 7)]])


def test_update_broadcasting():
  # γ scalar 1, λ = 1, H of shape [2, 3], w of shape [3] broadcast over rows.
  #   H = 3 → C=1/4, ω=sqrt3/2;   H = 1 → C=1/2, ω=sqrt(1/2);   H = 8 → C=1/9, ω=sqrt(8/9)
  #   H = 0 → C=1, ω=floor
  h = np.array([[3.0, 1.0, 8.0], [0.0, 3.0, 1.0]])
  w = np.array([2.0, -1.0, 4.0])
  upd = prior.update(w, h, 1.0, 1.0)
  assert upd.posterior_variance.shape == upd.omega.shape == upd.switch.shape == (2, 3)
  close(upd.posterior_variance, [[1 / 4, 1 / 2, 1 / 9], [1.0, 1 / 4, 1 / 2]])
  om = np.array([[math.sqrt(3) / 2, math.sqrt(1 / 2), math.sqrt(8 / 9)],
                 [FLOOR, math.sqrt(3) / 2, math.sqrt(1 / 2)]])
  close(upd.omega, om)
  close(upd.switch, np.abs(w)[None, :] / om)
  # Row-wise it agrees with the same call per row.
  for r in range(2):
    row = prior.update(w, h[r], 1.0, 1.0)
    close(row.switch, upd.switch[r])


def test_omega_floor_option():
  upd = prior.update(3.0, 0.0, 1.0, 1.0, omega_floor=1e-3)
  close(upd.omega, 1e-3)
  close(upd.switch, 3e3)


# ---------------------------------------------------------------------------
# Group form (eq. 21): ω_g = sqrt(Σ_m (γ_m − C_m)/γ_m²), s_g = ‖w_g‖₂/ω_g.
# ---------------------------------------------------------------------------
def test_group_update_hand_values():
  # Group over axis 0 of shape [2, 2] (2 members × 2 groups), λ = 1.
  # Group 0: members (γ=1, H=3, w=3), (γ=2, H=1, w=4)
  #   member 0: C=1/4,  (γ−C)/γ² = 3/4
  #   member 1: C=(1/2+1)^-1=2/3, (2−2/3)/4 = 1/3
  #   ω_g = sqrt(3/4 + 1/3) = sqrt(13/12);  ‖w‖ = 5;  s_g = 5 sqrt(12/13)
  # Group 1: members (γ=1, H=0, w=0), (γ=4, H=0, w=0)
  #   C = γ = (1, 4); ω_g = 0 → floor; s_g = 0
  w = np.array([[3.0, 0.0], [4.0, 0.0]])
  h = np.array([[3.0, 0.0], [1.0, 0.0]])
  gamma = np.array([[1.0, 1.0], [2.0, 4.0]])
  upd = prior.group_update(w, h, gamma, 1.0, axis=0)
  assert upd.posterior_variance.shape == (2, 2)
  assert upd.omega.shape == upd.switch.shape == (2,)
  close(upd.posterior_variance, [[1 / 4, 1.0], [2 / 3, 4.0]])
  close(upd.omega, [math.sqrt(13 / 12), FLOOR])
  close(upd.switch, [5 * math.sqrt(12 / 13), 0.0])


def test_group_update_other_axis_and_shared_gamma():
  # Members along axis 1, γ shared (scalar 1), λ = 2.
  # Group 0: H = (2, 6), w = (1, 1)
  #   (γ−C)/γ² = H/(λ+γH): 2/4 = 1/2, 6/8 = 3/4 → ω = sqrt(5/4) = sqrt5/2; ‖w‖ = sqrt2
  #   s = sqrt2 / (sqrt5/2) = 2 sqrt(2/5);   C = λ/(λ+H) = 1/2, 1/4
  # Group 1: H = (−3, 2), w = (0, −2)   (−3 clamped to 0)
  #   terms 0, 1/2 → ω = sqrt(1/2); ‖w‖ = 2; s = 2 sqrt2;   C = 1, 1/2
  w = np.array([[1.0, 1.0], [0.0, -2.0]])
  h = np.array([[2.0, 6.0], [-3.0, 2.0]])
  upd = prior.group_update(w, h, 1.0, 2.0, axis=1)
  close(upd.posterior_variance, [[1 / 2, 1 / 4], [1.0, 1 / 2]])
  close(upd.omega, [math.sqrt(5) / 2, math.sqrt(1 / 2)])
  close(upd.switch, [2 * math.sqrt(2 / 5), 2 * math.sqrt(2)])


def test_group_of_size_one_equals_elementwise():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(5,))
  h = rng.normal(size=(5,))  # some negative: clamped alike in both forms
  gamma = rng.uniform(0.05, 3.0, size=(5,))
  elem = prior.update(w, h, gamma, 0.3)
  grp = prior.group_update(w[None], h[None], gamma[None], 0.3, axis=0)
  close(grp.posterior_variance[0], elem.posterior_variance)
  close(grp.omega, elem.omega)
  close(grp.switch, elem.switch)
  assert np.any(h < 0)


# ---------------------------------------------------------------------------
# Harmonic "AND" and the dependency rule (eq. 20 via eqs. 6/8, SPEC §2).
# ---------------------------------------------------------------------------
def test_harmonic_hand_values():
  close(prior.harmonic(2.0, 2.0), 1.0)           # (1/2+1/2)^-1
  close(prior.harmonic(3.0, 6.0), 2.0)           # (1/3+1/6)^-1 = (1/2)^-1
  close(prior.harmonic(1.0, 2.0, 3.0), 6 / 11)   # (1+1/2+1/3)^-1 = (11/6)^-1
  close(prior.harmonic(INF, 5.0), 5.0)           # ∞ drops out
  close(prior.harmonic(0.0, 5.0), 0.0)           # a zero term switches off
  close(prior.harmonic(INF, 0.0, 4.0), 0.0)


def test_cell_gamma_full_hand_values():
  g0, g = prior.cell_gamma(S0, SOP, EDGES, NUM_INPUTS, "full")
  assert g0.shape == (5,) and g.shape == (5, 2)
  close(g0, FULL_ORIGIN)
  close(g, FULL_OP)


def test_cell_gamma_default_is_full():
  g0, g = prior.cell_gamma(S0, SOP, EDGES, NUM_INPUTS)
  close(g0, FULL_ORIGIN)
  close(g, FULL_OP)


def test_cell_gamma_edge_only_hand_values():
  g0, g = prior.cell_gamma(S0, SOP, EDGES, NUM_INPUTS, "edge_only")
  close(g0, S0)                 # origin γ⁰ = s⁰ (no S_in term)
  close(g, EDGE_ONLY_OP)        # op γ = h(s⁰, s)


def test_cell_gamma_input_nodes_have_infinite_s_in():
  # Huge switches on every edge into node 2 don't matter for edges out of inputs:
  # their γ must equal the edge-only value exactly (S_in = ∞ contributes 0).
  g0_full, g_full = prior.cell_gamma(S0, SOP, EDGES, NUM_INPUTS, "full")
  g0_eo, g_eo = prior.cell_gamma(S0, SOP, EDGES, NUM_INPUTS, "edge_only")
  np.testing.assert_array_equal(np.asarray(g0_full)[:4], np.asarray(g0_eo)[:4])
  np.testing.assert_array_equal(np.asarray(g_full)[:4], np.asarray(g_eo)[:4])
  # and the S_in term does act on the edge out of intermediate node 2
  assert np.all(np.asarray(g_full)[4] < np.asarray(g_eo)[4])
  assert float(g0_full[4]) < float(g0_eo[4])
  # Treating node 2 as a third input (num_inputs=3) makes S_in(2) = ∞ → e4 as edge-only.
  g0_3, g_3 = prior.cell_gamma(S0, SOP, EDGES, 3, "full")
  close(g0_3, S0)
  close(g_3, EDGE_ONLY_OP)


@pytest.mark.parametrize("dependency", ["full", "edge_only"])
def test_cell_gamma_zero_origin_kills_its_edge(dependency):
  s0 = S0.copy()
  s0[3] = 0.0  # e3 = (1,3) origin off
  s0[4] = 0.0  # e4 = (2,3) origin off
  g0, g = prior.cell_gamma(s0, SOP, EDGES, NUM_INPUTS, dependency)
  g0, g = np.asarray(g0), np.asarray(g)
  np.testing.assert_array_equal(g0[[3, 4]], 0.0)
  np.testing.assert_array_equal(g[[3, 4]], 0.0)
  # the other edges are untouched and nonzero
  close(g[:3], FULL_OP[:3])
  assert np.all(g[:3] > 0)


def test_cell_gamma_zero_origin_changes_downstream_s_in():
  # e0's origin off: e0 contributes 0 to S_in(2), so S_in(2) = 2 (from e1 only).
  #   e4: γ⁰ = h(2, 3) = (1/2+1/3)^-1 = 6/5
  #       op0: (1/2 + 1/3 + 1/6)^-1 = 1;  op1: (1/2 + 1/3 + 1/2)^-1 = (4/3)^-1 = 3/4
  s0 = S0.copy()
  s0[0] = 0.0
  g0, g = prior.cell_gamma(s0, SOP, EDGES, NUM_INPUTS, "full")
  close(g0, [0.0, 2.0, 1.0, 4.0, 6 / 5])
  close(g, [[0, 0], [1, 1], [1 / 2, 1 / 2], [2, 2], [1.0, 3 / 4]])
  # Both inputs of node 2 off: S_in(2) = 0, so everything out of node 2 gets γ = 0 in
  # "full" (chain), but not in "edge_only".
  s0[1] = 0.0
  g0, g = prior.cell_gamma(s0, SOP, EDGES, NUM_INPUTS, "full")
  assert float(g0[4]) == 0.0 and np.all(np.asarray(g[4]) == 0.0)
  g0, g = prior.cell_gamma(s0, SOP, EDGES, NUM_INPUTS, "edge_only")
  close(g0[4], 3.0)
  close(g[4], [2.0, 6 / 5])


def test_cell_gamma_zero_op_switch_kills_only_that_op():
  sop = SOP.copy()
  sop[4, 1] = 0.0
  # e4: path sums unchanged for S_in(2) (e4 is not into node 2): S_in(2) = 13/4
  #   op1 γ = 0; op0 stays 26/21; origin stays 39/25
  g0, g = prior.cell_gamma(S0, sop, EDGES, NUM_INPUTS, "full")
  close(g0[4], 39 / 25)
  close(g[4], [26 / 21, 0.0])


@pytest.mark.parametrize("dependency", ["full", "edge_only"])
def test_cell_gamma_negative_or_negative_zero_switch_reads_as_off(dependency):
  # A switch is ≥ 0 by construction; a negative one must act as 0 ("off") instead of
  # cancelling in 1/a + 1/b (e.g. h(−1, 1) = 1/0 = ∞) or making −∞ + ∞ = NaN with −0.
  s0 = S0.copy()
  s0[2] = -1.0   # e2 origin: as if 0
  sop = SOP.copy()
  sop[2, 0] = 1.0  # so that h(−1, 1) would be 1/0 without the clamp
  sop[3, 0] = -0.0  # e3 op0: as if +0
  s0_ref, sop_ref = S0.copy(), SOP.copy()
  s0_ref[2] = 0.0
  sop_ref[3, 0] = 0.0
  got = prior.cell_gamma(s0, sop, EDGES, NUM_INPUTS, dependency)
  ref = prior.cell_gamma(s0_ref, sop_ref, EDGES, NUM_INPUTS, dependency)
  for a, b in zip(got, ref):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.all(np.asarray(a) >= 0)
  np.testing.assert_array_equal(np.asarray(got[1])[2], [0.0, 0.0])
  # −0 next to a +0 origin would be 1/(+∞ + −∞) = NaN without the clamp.
  g0, g = prior.cell_gamma(np.zeros(5), -np.zeros((5, 2)), EDGES, NUM_INPUTS, dependency)
  np.testing.assert_array_equal(np.asarray(g0), 0.0)
  np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_cell_gamma_rejects_unknown_dependency():
  with pytest.raises(ValueError):
    prior.cell_gamma(S0, SOP, EDGES, NUM_INPUTS, "both")


# The evidence of a kept scalar given the rest of its group (sequential test).

def test_conditional_evidence_prunes_one_of_two_copies_and_refits_the_other():
  """Two scalars on the same feature (G = a·11ᵀ): each alone passes the diagonal
  test (w²a > λ), but given the other its curvature is 0, so one goes; the other
  re-fits to w₁ + w₂ (the OBS step), the value that keeps the loss unchanged.
  An independent scalar in another group is left alone."""
  a, lam = 2.0, 0.1
  g = np.zeros((3, 3))
  g[:2, :2] = a
  g[2, 2] = 0.5
  g[0, 2] = g[2, 0] = 0.7  # across groups: ignored
  w = np.array([0.4, 0.6, 0.3])
  keep, refit, evidence = prior.conditional_evidence_keep(
      w, g, np.ones(3, bool), np.array([0, 0, 1]), 2, lam, ridge=1e-9)
  np.testing.assert_array_equal(np.asarray(keep), [False, True, True])
  np.testing.assert_allclose(np.asarray(refit), [0.0, 1.0, 0.3], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(evidence), [0.0, 1.0 * a, 0.09 * 0.5], rtol=1e-4)


def test_conditional_evidence_equals_the_diagonal_test_for_independent_scalars():
  """With a diagonal G the test is w²H > λ per scalar, pruning the weakest
  failing member first and never a group's last member."""
  h = np.array([1.0, 2.0, 3.0, 0.5, 0.2])
  w = np.array([0.5, 0.1, 0.4, 0.1, 0.1])  # w²H: 0.25, 0.02, 0.48 | 0.005, 0.002
  keep, refit, _ = prior.conditional_evidence_keep(
      w, np.diag(h), np.array([True, True, True, True, True]), np.array([0, 0, 0, 1, 1]),
      2, 0.1)
  np.testing.assert_array_equal(np.asarray(keep), [True, False, True, True, False])
  np.testing.assert_allclose(np.asarray(refit), [0.5, 0.0, 0.4, 0.1, 0.0], rtol=1e-5)


def test_conditional_evidence_ignores_members_already_pruned():
  """A member pruned before the test stays pruned, and its curvature does not
  enter the others' conditional curvature."""
  g = np.array([[1.0, 0.99], [0.99, 1.0]])
  keep, _, evidence = prior.conditional_evidence_keep(
      np.array([0.5, 0.5]), g, np.array([False, True]), np.array([0, 0]), 1, 0.1)
  np.testing.assert_array_equal(np.asarray(keep), [False, True])
  np.testing.assert_allclose(np.asarray(evidence), [0.0, 0.25], rtol=1e-4)
