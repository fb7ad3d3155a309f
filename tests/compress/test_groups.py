"""Weight groups (`bayesnas_jax.compress.groups`, thesis App. A): what each group kind
masks, the group curvature, and the evidence and entropy prune rules."""
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import exact_diagonal, nn, value_grad_curvature
from bayesnas_jax.compress import groups


@pytest.mark.parametrize("shape, kind, pruned, expected_false", [
    ((4, 3), "row", (1, 0), lambda m: m[1, :]),
    ((4, 3), "column", (0, 2), lambda m: m[:, 2]),
    ((4, 3), "shape", (3, 1), lambda m: m[3, 1]),
    ((3, 3, 2, 5), "filter", (0, 0, 0, 4), lambda m: m[:, :, :, 4]),
    ((3, 3, 2, 5), "channel", (0, 0, 1, 0), lambda m: m[:, :, 1, :]),
    ((3, 3, 2, 5), "shape", (2, 0, 1, 0), lambda m: m[2, 0, 1, :]),
])
def test_each_group_kind_masks_its_entries(shape, kind, pruned, expected_false):
  state = groups.init_state(shape, [kind])
  keep = np.ones(groups.group_shape(shape, kind), bool)
  keep[pruned] = False
  state = state.replace(keep={kind: jnp.asarray(keep)})
  mask = np.asarray(groups.mask(shape, state))
  assert not np.any(expected_false(mask))
  assert mask.sum() == mask.size - np.size(expected_false(mask))


def test_group_curvature_is_the_sum_of_the_members_diagonal():
  """On the last dense layer under cross-entropy the engine's diagonal is exact
  (test_curvature); the group curvature must then be the sum of the exact entries."""
  rng = np.random.default_rng(0)
  params = {"w1": rng.normal(size=(5, 4)), "w2": rng.normal(size=(4, 3))}
  x, labels = rng.normal(size=(6, 5)), np.array([0, 1, 2, 0, 1, 2])

  def loss(p):
    return nn.softmax_cross_entropy(nn.dense(nn.relu(nn.dense(x, p["w1"])), p["w2"]), labels)

  _, _, curvature = value_grad_curvature(loss, params, mode="ggn")
  exact = np.asarray(exact_diagonal(loss, params, wrt="w2"))
  for kind in ("row", "column", "shape"):
    state = groups.init_state((4, 3), [kind])
    _, group_h = groups.update(jnp.asarray(params["w2"]), curvature["w2"], state, 0.01)
    np.testing.assert_allclose(group_h[kind], groups.group_sum(jnp.asarray(exact), kind),
                               rtol=1e-9)


def test_evidence_rule_keeps_what_the_data_support():
  """Prune iff Σ_m H_m(H_m w_m² − λ) ≤ 0 (hand-computed); the thesis' entropy
  rule on the same groups prunes by γ = ‖W_g‖/ω_g ≤ 1/(2πe) instead."""
  w = jnp.asarray([[0.2, 0.05, 0.3], [0.2, 0.05, 0.0]])   # columns are the groups
  h = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 1.0, 1e-9]])
  state = groups.init_state(w.shape, ["column"])
  kept, _ = groups.update(w, h, state, 0.01, rule="evidence")
  # column 0: 2·(0.04 − 0.01) > 0 kept; column 1: 2·(0.0025 − 0.01) < 0 pruned;
  # column 2: its only seen member (H = 1e-9) is ≈ 0 and the other unseen: pruned.
  np.testing.assert_array_equal(kept.keep["column"][0], [True, False, False])
  entropy, _ = groups.update(w, h, state, 0.01, rule="entropy")
  # By hand from γ(0) = 1: ω_g = sqrt(Σ_m H_m/(λ + H_m)), γ_g = ‖w_g‖/ω_g.
  # column 0: ‖w‖ = 0.2828, ω = sqrt(2/1.01) = 1.4072: γ = 0.201 > 1/(2πe) kept;
  # column 1: ‖w‖ = 0.0707: γ = 0.0502 < 0.0585 pruned;
  # column 2: ‖w‖ = 0.3, ω = sqrt(1e-9/0.01) = 3.16e-4: γ ≈ 949, kept (the
  # evidence rule prunes it: the data do not see it).
  np.testing.assert_allclose(np.asarray(entropy.gamma["column"][0]),
                             [0.2 * np.sqrt(2) / np.sqrt(2 / 1.01),
                              0.05 * np.sqrt(2) / np.sqrt(2 / 1.01),
                              0.3 / np.sqrt(1e-9 / (0.01 + 1e-9))], rtol=1e-4)
  np.testing.assert_array_equal(entropy.keep["column"][0], [True, False, True])
  with pytest.raises(ValueError, match="prune rule"):
    groups.update(w, h, state, 0.01, rule="magnitude")
