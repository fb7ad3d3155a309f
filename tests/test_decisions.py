"""The prior's decisions (issue: the prior decides): the evidence prune rule,
the λ ramp over rounds, the curvature's noise, and per-edge decisions with
their margins, each on hand-made numbers computed here independently."""
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bayesnas_jax.search import hard, run
from bayesnas_jax.spaces import nb201
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
  np.testing.assert_array_equal(np.asarray(state["keep"]["c"]["ops"]), expected)
  np.testing.assert_allclose(np.asarray(records["c"]["ops"]["evidence"]),
                             h * (h * w ** 2 - LAMBDA), rtol=1e-5)
  # The paper's rule on the same numbers prunes by γ instead: another decision.
  literal, _, _ = _update(w, h, prune_rule="entropy")
  assert not np.array_equal(np.asarray(literal["keep"]["c"]["ops"]), expected)


def test_evidence_rule_is_unchanged_by_a_scale_batch_norm_cancels():
  """w → cw with H → H/c² (a loss invariant to the scale) keeps every decision."""
  rng = np.random.default_rng(0)
  w = rng.uniform(0.1, 1.0, (3, 2))
  h = rng.uniform(0.001, 0.2, (3, 2))
  base, _, _ = _update(w, h, prune_rule="evidence")
  for c in (0.1, 3.0):
    scaled, _, _ = _update(c * w, h / c ** 2, prune_rule="evidence")
    np.testing.assert_array_equal(np.asarray(scaled["keep"]["c"]["ops"]),
                                  np.asarray(base["keep"]["c"]["ops"]))


def test_group_evidence_weighs_members_by_their_curvature():
  """Two stacked cells: Σ_m H_m(H_m w_m² − λ) > 0 keeps the group even though
  one member alone would fail."""
  w = np.array([[[0.9, 0.9]] * 3, [[0.05, 0.05]] * 3])
  h = np.array([[[0.1, 0.001]] * 3, [[0.02, 0.2]] * 3])
  state, _, _ = _update(w, h, members=2, prune_rule="evidence")
  slope = np.sum(h * (h * w ** 2 - LAMBDA), axis=0)
  # op a: 0.1·(0.081 − 0.01) + 0.02·(0.00005 − 0.01) > 0; op b < 0.
  np.testing.assert_array_equal(np.asarray(state["keep"]["c"]["ops"]), slope > 0)
  assert slope[0, 0] > 0 > slope[0, 1]


def test_lambda_ramp_factors():
  assert [hard.lambda_factor("linear", t, 4) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
  assert hard.lambda_factor("none", 0, 4) == 1.0
  with pytest.raises(ValueError, match="config.search.lambda_ramp"):
    hard.lambda_factor("cosine", 0, 2)


def test_unknown_prune_rule_is_one_line():
  with pytest.raises(ValueError, match="config.search.prune_rule: expected one of"):
    _update(np.ones((3, 2)), np.ones((3, 2)), prune_rule="gamma")


def test_curvature_mean_and_standard_error_over_batches():
  batches = np.array([[1.0, 4.0], [3.0, 4.0], [2.0, 7.0], [6.0, 1.0]])
  total = {"x": jnp.asarray(batches.sum(0), jnp.float32)}
  squares = {"x": jnp.asarray((batches ** 2).sum(0), jnp.float32)}
  mean, se = run.curvature_mean_and_se(total, squares, jnp.asarray(4))
  np.testing.assert_allclose(np.asarray(mean["x"]), batches.mean(0), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(se["x"]), batches.std(0, ddof=1) / 2.0, rtol=1e-5)
  _, one = run.curvature_mean_and_se(total, squares, jnp.asarray(1))
  assert np.all(np.asarray(one["x"]) == 0)


def test_score_noise_of_the_saliency():
  w = jnp.asarray([[0.5, 2.0]])
  se = jnp.asarray([[0.1, 0.01]])
  np.testing.assert_allclose(np.asarray(hard.score_noise("saliency", w, se, "cell_type")),
                             [0.25 * 0.1, 4.0 * 0.01], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(hard.score_noise("curvature", w, se, "none")),
                             [[0.1, 0.01]], rtol=1e-6)


def _search_config(rank_by="saliency"):
  return ml_collections.ConfigDict(dict(grouping="cell_type", rank_by=rank_by,
                                        lambda_w=LAMBDA))


def _state(score, se, keep, before, origin_keep=None):
  spec = nb201.cell_spec()
  o = np.ones((6,), bool) if origin_keep is None else origin_keep
  return spec, {"score": {"cell": {"ops": np.asarray(score), "origin": np.zeros(6)}},
                "score_se": {"cell": {"ops": np.asarray(se), "origin": np.zeros(6)}},
                "keep": {"cell": {"ops": np.asarray(keep), "origin": o}},
                "alive_before": {"cell": {"ops": np.asarray(before),
                                          "origin": np.ones(6, bool)}},
                "gamma": {"cell": {"ops": np.asarray(score), "origin": np.zeros(6)}}}


def test_nb201_decisions_count_prior_and_rank_and_rate_margins():
  score = np.full((6, 4), 0.001)
  se = np.full((6, 4), 0.001)
  keep = np.zeros((6, 4), bool)
  before = np.ones((6, 4), bool)
  # Edge 0→1: the prior left one op (conv 3×3), runner-up skip by 0.010 ± √2·0.001.
  keep[0, 2] = True
  score[0, 2], score[0, 0] = 0.012, 0.002
  # Edge 0→2: the prior left two ops; rank picks the larger score (1×1), margin 0.5 s.e.
  keep[1, 1] = keep[1, 3] = True
  score[1, 1], score[1, 3] = 0.0205, 0.02
  # Edge 1→2: nothing left: none, by the prior; best op 0.004 under λ by 6 s.e.
  score[2, 0] = 0.004
  # Edges 0→3, 1→3, 2→3: one op each, alone since the previous round.
  for e, o in ((3, 0), (4, 2), (5, 2)):
    keep[e, o] = True
    before[e] = False
    before[e, o] = True
    score[e, o] = 0.03
  spec, state = _state(score, se, keep, before)
  decided = nb201.decisions(state, _search_config(), spec)
  assert [d["op"] for d in decided] == ["nor_conv_3x3", "nor_conv_1x1", "none",
                                        "skip_connect", "nor_conv_3x3", "nor_conv_3x3"]
  assert [d["decided_by"] for d in decided] == ["prior", "rank", "prior", "prior", "prior",
                                                "prior"]
  assert decided[1]["survivors"] == ["nor_conv_1x1", "avg_pool_3x3"]
  assert decided[0]["margin"] == pytest.approx(0.010 / (np.sqrt(2) * 0.001))
  assert decided[1]["margin"] == pytest.approx(0.0005 / (np.sqrt(2) * 0.001))
  assert decided[2]["margin"] == pytest.approx((LAMBDA - 0.004) / 0.001)
  # Alone on its edge: the alternative is `none`, scored at λ.
  assert decided[3]["margin"] == pytest.approx((0.03 - LAMBDA) / 0.001)
  assert nb201.derive(state, _search_config(), spec)["cell"][1] == ["nor_conv_1x1", 0, 2]
  # No noise measured: no margin.
  _, quiet = _state(score, np.zeros((6, 4)), keep, before)
  assert all(d["margin"] is None for d in nb201.decisions(quiet, _search_config(), spec))


def test_darts_decisions_count_nodes_the_prior_left_exact():
  from configs import darts_cifar10_search  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.spaces import darts  # pylint: disable=import-outside-toplevel
  config = darts_cifar10_search.get_config()
  spec = darts.cell_spec(config.space)
  keep = {kind: np.zeros((spec.num_edges, len(spec.ops)), bool) for kind in ("normal", "reduce")}
  # normal node 2: exactly two edges with one op each; node 3: three survivors;
  # node 4: two ops on one edge; node 5: nothing.
  e = {edge: i for i, edge in enumerate(spec.edges)}
  keep["normal"][e[(0, 2)], 1] = keep["normal"][e[(1, 2)], 0] = True
  keep["normal"][e[(0, 3)], 1] = keep["normal"][e[(1, 3)], 2] = True
  keep["normal"][e[(2, 3)], 3] = True
  keep["normal"][e[(2, 4)], 1] = keep["normal"][e[(2, 4)], 2] = True
  state = {"gamma": {k: {"ops": np.ones_like(v, float)} for k, v in keep.items()},
           "keep": {k: {"ops": v} for k, v in keep.items()}}
  search = ml_collections.ConfigDict(dict(grouping="cell_type", top_k=2))
  genotype = {"normal": [], "reduce": []}
  decided = darts.decisions(config.space, genotype, state, search)
  normal = [d for d in decided if d["edge"].startswith("normal")]
  assert [d["decided_by"] for d in normal] == ["prior", "rank", "rank", "rank"]
  assert [d["empty"] for d in normal] == [False, False, False, True]
  assert all(d["empty"] for d in decided if d["edge"].startswith("reduce"))
