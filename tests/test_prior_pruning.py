"""Tests of pruning in the HARD prior (bayesnas_jax/prior.py): the entropy threshold,
the keep mask and the entropy, the structural consequences in a cell, curvature
clamping, and robustness: never NaN/Inf for finite input, float32 stays float32,
jit equals eager. Expected numbers are worked out by hand, as in test_prior.py."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import prior
from tests.prior_support import EDGES, FULL_OP, FULL_ORIGIN, NUM_INPUTS, S0, SOP, close


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
