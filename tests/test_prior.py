"""Tests of the HARD prior (bayesnas_jax/prior.py): eqs. 6/8 (SPEC §2), 17–20 and pruning.

Every expected number below is worked out by hand in the comments (fractions,
square roots), not read back from the code. tests/conftest.py enables float64.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import prior

FLOOR = prior.OMEGA_FLOOR
INF = math.inf

# Tiny cell DAG used throughout: inputs 0, 1; intermediate nodes 2, 3; 2 ops per edge.
EDGES = ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_INPUTS = 2


def close(actual, expected, rtol=1e-12, atol=0.0):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected, dtype=np.float64),
                             rtol=rtol, atol=atol)


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


# Switches for the tiny DAG.
#        e0=(0,2) e1=(1,2) e2=(0,3) e3=(1,3) e4=(2,3)
S0 = np.array([1.0, 2.0, 1.0, 4.0, 3.0])
SOP = np.array([[1.0, 3.0], [2.0, 2.0], [1.0, 1.0], [4.0, 4.0], [6.0, 2.0]])
# Per-path AND h(s0, s):
#   e0: h(1,1)=1/2, h(1,3)=(1+1/3)^-1=3/4      → edge sum 5/4
#   e1: h(2,2)=1,   h(2,2)=1                   → 2
#   e2: h(1,1)=1/2, 1/2                        → 1
#   e3: h(4,4)=2,   2                          → 4
#   e4: h(3,6)=(1/3+1/6)^-1=2, h(3,2)=(1/3+1/2)^-1=6/5 → 16/5
# S_in(0) = S_in(1) = ∞;  S_in(2) = 5/4 + 2 = 13/4;  S_in(3) = 1 + 4 + 16/5 = 41/5 (unused:
# node 3 has no out-edge here).
EDGE_ONLY_OP = [[1 / 2, 3 / 4], [1.0, 1.0], [1 / 2, 1 / 2], [2.0, 2.0], [2.0, 6 / 5]]
# "full": edges out of inputs: γ⁰ = h(∞, s⁰) = s⁰ and γ = h(s⁰, s) (as edge_only).
# e4 (out of node 2, S_in = 13/4):
#   γ⁰ = (4/13 + 1/3)^-1 = ((12+13)/39)^-1 = 39/25
#   op0: (4/13 + 1/3 + 1/6)^-1 = (4/13 + 1/2)^-1 = (21/26)^-1 = 26/21
#   op1: (4/13 + 1/3 + 1/2)^-1 = (4/13 + 5/6)^-1 = ((24+65)/78)^-1 = 78/89
FULL_ORIGIN = [1.0, 2.0, 1.0, 4.0, 39 / 25]
FULL_OP = [[1 / 2, 3 / 4], [1.0, 1.0], [1 / 2, 1 / 2], [2.0, 2.0], [26 / 21, 78 / 89]]


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


# ---------------------------------------------------------------------------
# Entropy pruning.
# ---------------------------------------------------------------------------
def test_threshold_value():
  # 2πe = 6.283185307… × 2.718281828… = 17.0794684…;  1/17.0794684 = 0.05854983…
  assert abs(prior.PRUNE_THRESHOLD - 0.0585498315) < 1e-9
  assert abs(prior.PRUNE_THRESHOLD - 0.0585) < 1e-4  # the paper's rounded value


def test_keep_mask_boundary():
  t = prior.PRUNE_THRESHOLD
  above = np.nextafter(t, 1.0)
  below = np.nextafter(t, 0.0)
  mask = np.asarray(prior.keep_mask(jnp.array([t, above, below, 0.0, 1.0, -1.0])))
  # γ = threshold: entropy = 0 ≤ 0 → pruned; one ulp above → kept.
  np.testing.assert_array_equal(mask, [False, True, False, False, True, False])
  assert prior.keep_mask(jnp.array(0.06))  # 0.06 > 0.05855
  assert not prior.keep_mask(jnp.array(0.058))
  # custom threshold
  np.testing.assert_array_equal(np.asarray(prior.keep_mask(jnp.array([0.5, 0.7]), 0.5)),
                                [False, True])


def test_entropy_values_and_sign():
  # γ = 1: ½ ln(2πe) = ½ (ln 2π + 1) = ½ (1.8378770664 + 1) = 1.4189385332
  close(prior.entropy(1.0), 1.4189385332, rtol=1e-10)
  # γ = 1/(2πe): ½ ln 1 = 0
  assert abs(float(prior.entropy(prior.PRUNE_THRESHOLD))) < 1e-15
  # γ = e^2/(2πe) = e/(2π): ½ ln(e²) = 1
  close(prior.entropy(math.e / (2 * math.pi)), 1.0)
  # dtype: a Python float is not cut to float32 (x64 on), float32 stays float32
  assert prior.entropy(1.0).dtype == jnp.float64
  assert prior.entropy(jnp.float32(1.0)).dtype == jnp.float32
  assert np.isfinite(float(prior.entropy(jnp.float32(0.0))))
  close(prior.entropy(jnp.float32(1.0)), 1.4189385332, rtol=1e-6)
  # sign agrees with keep_mask on a grid that avoids the exact boundary
  gamma = jnp.array([0.0, 1e-30, 0.01, 0.05, 0.0584, 0.0586, 0.1, 1.0, 1e30])
  ent = np.asarray(prior.entropy(gamma))
  assert np.all(np.isfinite(ent))
  np.testing.assert_array_equal(ent > 0, np.asarray(prior.keep_mask(gamma)))
  np.testing.assert_array_equal(ent > 0, [False] * 5 + [True] * 4)


# ---------------------------------------------------------------------------
# Structural consequences of pruning in a cell.
# ---------------------------------------------------------------------------
ALL_OPS = np.ones((5, 2), bool)
ALL_EDGES = np.ones((5,), bool)


def _keep(origin, ops):
  o, p, alive = prior.cell_keep(jnp.asarray(origin), jnp.asarray(ops), EDGES, NUM_INPUTS)
  return np.asarray(o), np.asarray(p), np.asarray(alive)


def test_cell_keep_all_kept():
  o, p, alive = _keep(ALL_EDGES, ALL_OPS)
  assert o.all() and p.all() and alive.all()
  assert alive.shape == (4,)


def test_cell_keep_pruned_origin_removes_its_ops():
  origin = ALL_EDGES.copy()
  origin[2] = False  # e2 = (0,3)
  o, p, alive = _keep(origin, ALL_OPS)
  np.testing.assert_array_equal(p[2], [False, False])
  np.testing.assert_array_equal(o, [True, True, False, True, True])
  assert p[[0, 1, 3, 4]].all()
  assert alive.all()


def test_cell_keep_edge_with_all_ops_pruned_is_removed():
  ops = ALL_OPS.copy()
  ops[3] = False  # e3's ops all pruned although its origin is kept
  o, p, alive = _keep(ALL_EDGES, ops)
  np.testing.assert_array_equal(o, [True, True, True, False, True])
  assert alive.all()


def test_cell_keep_chain_effect():
  # Prune both inputs of node 2 (origins of e0, e1): node 2 dies and edge (2,3) goes
  # although its own origin and ops were kept. Node 3 survives through e2, e3.
  origin = ALL_EDGES.copy()
  origin[[0, 1]] = False
  o, p, alive = _keep(origin, ALL_OPS)
  np.testing.assert_array_equal(alive, [True, True, False, True])
  np.testing.assert_array_equal(o, [False, False, True, True, False])
  np.testing.assert_array_equal(p[4], [False, False])
  # Same when node 2 loses its inputs through ops instead of origins.
  ops = ALL_OPS.copy()
  ops[[0, 1]] = False
  o, p, alive = _keep(ALL_EDGES, ops)
  np.testing.assert_array_equal(alive, [True, True, False, True])
  np.testing.assert_array_equal(o, [False, False, True, True, False])
  # One input of node 2 left (a single op of e1): node 2 lives, e4 stays.
  ops[1, 0] = True
  o, p, alive = _keep(ALL_EDGES, ops)
  np.testing.assert_array_equal(alive, [True, True, True, True])
  np.testing.assert_array_equal(p[4], [True, True])


def test_cell_keep_inputs_always_alive():
  o, p, alive = _keep(np.zeros(5, bool), ALL_OPS)
  np.testing.assert_array_equal(alive, [True, True, False, False])
  assert not o.any() and not p.any()
  # Node 3 dies when its only surviving input is the dead node 2.
  origin = ALL_EDGES.copy()
  origin[[0, 1, 2, 3]] = False
  o, p, alive = _keep(origin, ALL_OPS)
  np.testing.assert_array_equal(alive, [True, True, False, False])
  assert not o.any()


# ---------------------------------------------------------------------------
# Curvature clamping.
# ---------------------------------------------------------------------------
def test_clamp_curvature():
  h = jnp.array([[-1.0, 0.0, 2.0], [-0.5, 3.0, -1e-30]])
  clamped, count = prior.clamp_curvature(h)
  np.testing.assert_array_equal(np.asarray(clamped), [[0, 0, 2], [0, 3, 0]])
  assert int(count) == 3
  _, count = prior.clamp_curvature(jnp.array([0.0, -0.0, 1.0]))
  assert int(count) == 0  # −0 is not negative curvature
  clamped, count = prior.clamp_curvature(jnp.array(-2.0))
  assert float(clamped) == 0.0 and int(count) == 1


# ---------------------------------------------------------------------------
# Robustness: never NaN/Inf for finite input, and jit.
# ---------------------------------------------------------------------------
SPECIAL = np.array([0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, 1.0, -1.0])


def _sample(rng, shape, nonneg=False):
  x = np.where(rng.random(shape) < 0.5, rng.choice(SPECIAL, shape),
               rng.standard_normal(shape) * 10.0 ** rng.integers(-8, 9, shape))
  return np.abs(x) if nonneg else x


def _assert_finite(tree):
  for leaf in jax.tree_util.tree_leaves(tree):
    assert np.all(np.isfinite(np.asarray(leaf))), leaf


_update_jit = jax.jit(prior.update)
_group_jit = jax.jit(prior.group_update, static_argnames=("axis",))
_gamma_jit = jax.jit(prior.cell_gamma, static_argnums=(2, 3, 4))


@pytest.mark.parametrize("seed", range(2))
def test_no_nan_or_inf_sweep(seed):
  rng = np.random.default_rng(seed)
  shape = (12, 5, 4)
  for lam in (1e-30, 1e-3, 1.0, 1e30):
    w, h, g = _sample(rng, shape), _sample(rng, shape), _sample(rng, shape)
    g[0] = 0.0
    h[1] = 0.0
    w[2] = 0.0
    for out in (prior.update(w, h, g, lam), _update_jit(w, h, g, lam)):
      _assert_finite(out)
      assert np.all(np.asarray(out.omega) > 0)
      assert np.all(np.asarray(out.switch) >= 0)
      assert np.all(np.asarray(out.posterior_variance) >= 0)
    for out in (prior.group_update(w, h, g, lam, axis=2), _group_jit(w, h, g, lam, axis=2)):
      _assert_finite(out)
      assert out.omega.shape == (12, 5)
      assert np.all(np.asarray(out.switch) >= 0)
  # cell_gamma on raw switches (zeros, negatives, huge and tiny) and on switches from update
  for dependency in prior.DEPENDENCIES:
    s0, s = _sample(rng, (64, 5)), _sample(rng, (64, 5, 2))
    s0[0], s[1] = 0.0, 0.0
    batched = jax.jit(jax.vmap(functools.partial(
        prior.cell_gamma, edges=EDGES, num_inputs=NUM_INPUTS, dependency=dependency)))
    outs = [batched(s0, s)] + [prior.cell_gamma(s0[i], s[i], EDGES, NUM_INPUTS, dependency)
                               for i in range(2)]
    for out in outs:
      _assert_finite(out)
      assert all(np.all(np.asarray(x) >= 0) for x in out)
    w, h, g = _sample(rng, (5, 3)), _sample(rng, (5, 3)), _sample(rng, (5, 3))
    upd = _update_jit(w, h, g, 1e-3)
    out = _gamma_jit(upd.switch[:, 0], upd.switch[:, 1:], EDGES, NUM_INPUTS, dependency)
    _assert_finite(out)


def test_no_nan_all_zero_and_all_huge_switches():
  for value in (0.0, 1e-30, 1e30):
    s0 = np.full((5,), value)
    s = np.full((5, 2), value)
    for dependency in prior.DEPENDENCIES:
      _assert_finite(prior.cell_gamma(s0, s, EDGES, NUM_INPUTS, dependency))


def test_float32_stays_float32_and_finite():
  rng = np.random.default_rng(7)
  w = rng.standard_normal((4, 3)).astype(np.float32)
  h = (rng.standard_normal((4, 3)) * 1e3).astype(np.float32)
  g = rng.uniform(0, 5, (4, 3)).astype(np.float32)
  h[0] = 0.0
  upd = prior.update(w, h, g, 1e-2)
  assert upd.switch.dtype == jnp.float32 and upd.omega.dtype == jnp.float32
  _assert_finite(upd)
  s0 = np.array([0.0, 1.0, 2.0, 0.5, 3.0], np.float32)
  g0, gop = prior.cell_gamma(s0, np.ones((5, 2), np.float32), EDGES, NUM_INPUTS)
  assert g0.dtype == jnp.float32 and gop.dtype == jnp.float32
  _assert_finite((g0, gop))


def test_jit_matches_eager():
  w = np.array([[1.0, -1.0, 5.0], [0.0, 1.0, 4.0]])
  h = np.array([[2.0, 6.0, 0.0], [2.0, -1.0, 14.0]])
  g = np.array([[1.0, 2.0, 0.5], [3.0, 1.0, 1.0]])
  for a, b in zip(prior.update(w, h, g, 2.0), _update_jit(w, h, g, 2.0)):
    close(b, a, rtol=1e-14)
  for a, b in zip(prior.group_update(w, h, g, 2.0, axis=0), _group_jit(w, h, g, 2.0, axis=0)):
    close(b, a, rtol=1e-14)
  for dep in prior.DEPENDENCIES:
    for a, b in zip(prior.cell_gamma(S0, SOP, EDGES, NUM_INPUTS, dep),
                    _gamma_jit(S0, SOP, EDGES, NUM_INPUTS, dep)):
      close(b, a, rtol=1e-14)
  # jitted cell_gamma against the hand values too
  g0, gop = _gamma_jit(S0, SOP, EDGES, NUM_INPUTS, "full")
  close(g0, FULL_ORIGIN)
  close(gop, FULL_OP)
  # keep_mask, entropy, clamp_curvature, cell_keep under jit
  gamma = jnp.array([0.01, prior.PRUNE_THRESHOLD, 0.1])
  np.testing.assert_array_equal(np.asarray(jax.jit(prior.keep_mask)(gamma)),
                                np.asarray(prior.keep_mask(gamma)))
  close(jax.jit(prior.entropy)(gamma), prior.entropy(gamma), rtol=1e-14)
  c, n = jax.jit(prior.clamp_curvature)(jnp.array([-1.0, 2.0]))
  np.testing.assert_array_equal(np.asarray(c), [0.0, 2.0])
  assert int(n) == 1
  keep_jit = jax.jit(functools.partial(prior.cell_keep, edges=EDGES, num_inputs=NUM_INPUTS))
  origin = ALL_EDGES.copy()
  origin[[0, 1]] = False
  for a, b in zip(keep_jit(origin, ALL_OPS), _keep(origin, ALL_OPS)):
    np.testing.assert_array_equal(np.asarray(a), b)
