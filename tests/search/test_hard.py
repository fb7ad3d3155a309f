"""The prior's decisions in the HARD update (`bayesnas_jax.search.hard`; issue: the
prior decides): the evidence prune rule, the λ ramp over rounds and the score's
noise, each on hand-made numbers computed here independently."""
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax.search import hard
from bayesnas_jax.spaces.cell import CellSpec

SPEC = CellSpec(("a", "b"), 2, 1)  # 3 edges: 0→1, 0→2, 1→2
LAMBDA = 0.01


def _update(w_ops, h_ops, members=1, **options):
  w = jnp.asarray(np.broadcast_to(w_ops, (members, 3, 2)), jnp.float32)
  h = jnp.asarray(np.broadcast_to(h_ops, (members, 3, 2)), jnp.float32)
  arch = {"c": {"origin": jnp.ones((members, 3)), "ops": w}}
  curvature = {"c": {"origin": jnp.ones((members, 3)), "ops": h}}
  state = hard.init_prior(arch, "cell_type")
  return hard.hard_update(arch, curvature, state, spec=SPEC, lambda_w=LAMBDA,
                          grouping="cell_type", dependency="edge_only", **options)


def test_evidence_rule_keeps_exactly_where_w2h_exceeds_lambda():
  w = np.array([[0.5, 0.5], [0.2, 1.0], [0.9, 0.05]])
  h = np.array([[0.05, 0.03], [0.3, 0.011], [0.1, 1.0]])
  # w²H: 0.0125, 0.0075 | 0.012, 0.011 | 0.081, 0.0025 against λ = 0.01.
  expected = w ** 2 * h > LAMBDA
  state, records, _ = _update(w, h, prune_rule="evidence")
  np.testing.assert_array_equal(np.asarray(state.keep["c"]["ops"]), expected)
  np.testing.assert_allclose(np.asarray(records["c"]["ops"]["evidence"]),
                             h * (h * w ** 2 - LAMBDA), rtol=1e-5)
  # The paper's rule on the same numbers prunes by γ instead: another decision.
  literal, _, _ = _update(w, h, prune_rule="entropy")
  assert not np.array_equal(np.asarray(literal.keep["c"]["ops"]), expected)


def test_evidence_rule_is_unchanged_by_a_scale_batch_norm_cancels():
  """w → cw with H → H/c² (a loss invariant to the scale) keeps every decision."""
  rng = np.random.default_rng(0)
  w = rng.uniform(0.1, 1.0, (3, 2))
  h = rng.uniform(0.001, 0.2, (3, 2))
  base, _, _ = _update(w, h, prune_rule="evidence")
  for c in (0.1, 3.0):
    scaled, _, _ = _update(c * w, h / c ** 2, prune_rule="evidence")
    np.testing.assert_array_equal(np.asarray(scaled.keep["c"]["ops"]),
                                  np.asarray(base.keep["c"]["ops"]))


def test_group_evidence_weighs_members_by_their_curvature():
  """Two stacked cells: Σ_m H_m(H_m w_m² − λ) > 0 keeps the group even though
  one member alone would fail."""
  w = np.array([[[0.9, 0.9]] * 3, [[0.05, 0.05]] * 3])
  h = np.array([[[0.1, 0.001]] * 3, [[0.02, 0.2]] * 3])
  state, _, _ = _update(w, h, members=2, prune_rule="evidence")
  slope = np.sum(h * (h * w ** 2 - LAMBDA), axis=0)
  # op a: 0.1·(0.081 − 0.01) + 0.02·(0.00005 − 0.01) > 0; op b < 0.
  np.testing.assert_array_equal(np.asarray(state.keep["c"]["ops"]), slope > 0)
  assert slope[0, 0] > 0 > slope[0, 1]


def test_lambda_ramp_factors():
  assert [hard.lambda_factor("linear", t, 4) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
  assert hard.lambda_factor("none", 0, 4) == 1.0
  with pytest.raises(ValueError, match="config.search.lambda_ramp"):
    hard.lambda_factor("cosine", 0, 2)


def test_unknown_prune_rule_is_one_line():
  with pytest.raises(ValueError, match="config.search.prune_rule: expected one of"):
    _update(np.ones((3, 2)), np.ones((3, 2)), prune_rule="gamma")


def test_score_noise_of_the_saliency():
  w = jnp.asarray([[0.5, 2.0]])
  se = jnp.asarray([[0.1, 0.01]])
  np.testing.assert_allclose(np.asarray(hard.score_noise("saliency", w, se, "cell_type")),
                             [0.25 * 0.1, 4.0 * 0.01], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(hard.score_noise("curvature", w, se, "none")),
                             [[0.1, 0.01]], rtol=1e-6)
