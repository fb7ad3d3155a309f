"""The method options of SPEC §7, each on a hand-made case where it must change
what it claims to change (docs/method_options.md; QUALITY.md has the
benchmark evidence for the defaults).

* `space.origin = "output"`: under batch norm the origin scalar on the edge
  input has no data gradient; on the edge output it has one.
* `search.curvature_source = "ggn"`: the exact Gauss–Newton diagonal equals
  Jᵀ(diag p − ppᵀ)J built from a Jacobian taken here by reverse mode, float64.
* `search.zero_curvature`: a group with H = 0 is never pruned under "keep"
  (γ explodes) and is pruned under "prune".
* `search.rank_by = "saliency"` ranks by w²H where γ would pick another op.
* `search.derivation = "edges"` never puts two ops on one edge.
* `search.penalty_budget`: one round of SGD moves a scalar by the budget.
* `search.retrain_between_rounds`: step 5 sets w = 1 on the survivors, 0 on
  the pruned, and restarts the optimizer.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from bayesnas_jax import derivation
from bayesnas_jax.curvature import softmax_ggn_diagonal
from bayesnas_jax.search import hard, objective, run
from bayesnas_jax.spaces import nb201
from bayesnas_jax.spaces.cell import CellSpec


def _nb201(ops, origin="input", channels=4):
  return ml_collections.ConfigDict(dict(
      name="nb201", ops=list(ops), channels=channels, cells_per_stage=1, num_classes=3,
      remat=False, origin=origin))


@pytest.fixture(scope="module")
def tiny_batch():
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.standard_normal((6, 8, 8, 3)), jnp.float64)
  labels = jnp.asarray(rng.integers(0, 3, (6,)), jnp.int32)
  return images, labels


def _float64(tree):
  return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _origin_gradient(origin, batch):
  config = _nb201(("nor_conv_1x1", "nor_conv_3x3"), origin)
  images, labels = batch
  weights = _float64(nb201.init_weights(jax.random.PRNGKey(0), config))
  arch = _float64(nb201.init_arch(config))
  arch["cell"]["origin"] = arch["cell"]["origin"] * 0.7

  def loss(origin_scalars):
    a = {"cell": {**arch["cell"], "origin": origin_scalars}}
    logits = nb201.apply(weights, a, images, config)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

  return np.abs(np.asarray(jax.grad(loss)(arch["cell"]["origin"])))


def test_origin_under_batch_norm(tiny_batch):
  """Only BN-ended ops (the convolutions): w⁰ on the input is cancelled by every
  op's BN (up to its ε), so its data gradient all but vanishes; on the output
  weighs the edge against the other inputs of its node and has an ordinary
  gradient — except on 0→1, node 1's only input, which here feeds BN-ended ops
  alone, so scaling it is cancelled one node later."""
  on_input = _origin_gradient("input", tiny_batch)[0]
  on_output = _origin_gradient("output", tiny_batch)[0]
  mixed = on_output[1:]  # 0→2, 1→2, 0→3, 1→3, 2→3
  assert mixed.min() > 1e-3, on_output
  assert on_output[0] < 1e-2 * mixed.min(), on_output
  assert on_input.max() < 1e-2 * mixed.min(), (on_input, on_output)


def test_ggn_diagonal_matches_jacobian_reference(tiny_batch):
  config = _nb201(nb201.NB201_OPS, "output")
  images, _ = tiny_batch
  weights = _float64(nb201.init_weights(jax.random.PRNGKey(1), config))
  arch = jax.tree_util.tree_map(
      lambda a: a * jnp.linspace(0.3, 1.2, a.size).reshape(a.shape),
      _float64(nb201.init_arch(config)))
  logits_fn = lambda a: nb201.apply(weights, a, images, config)
  ggn = ravel_pytree(softmax_ggn_diagonal(logits_fn, arch, chunk=7))[0]
  flat, unravel = ravel_pytree(arch)
  jac = jax.jacrev(lambda v: logits_fn(unravel(v)))(flat)  # [B, K, P]
  p = jax.nn.softmax(logits_fn(arch))
  # Jᵀ(diag p − ppᵀ)J per example, its diagonal, averaged over the batch.
  hess_out = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(p)
  full = jnp.einsum("bki,bkl,bli->bi", jac, hess_out, jac).mean(0)
  np.testing.assert_allclose(np.asarray(ggn), np.asarray(full), rtol=1e-9, atol=1e-14)
  assert np.all(np.asarray(ggn) >= 0)
  assert np.asarray(ggn).max() > 1e-4  # not trivially zero


SPEC = CellSpec(("a", "b"), 2, 1)  # 3 edges: 0→1, 0→2, 1→2


def _update(h_ops, w_ops=None, **options):
  arch = {"c": {"origin": jnp.ones((1, 3)),
                "ops": jnp.asarray(w_ops if w_ops is not None else np.full((1, 3, 2), 0.8),
                                   jnp.float32)}}
  curvature = {"c": {"origin": jnp.ones((1, 3)), "ops": jnp.asarray(h_ops, jnp.float32)}}
  state = hard.init_prior(arch, "cell_type")
  return hard.hard_update(arch, curvature, state, spec=SPEC, lambda_w=0.01,
                          grouping="cell_type", dependency="edge_only", **options)


def test_zero_curvature_keep_versus_prune():
  h = np.ones((1, 3, 2), np.float32)
  h[0, 1, 0] = 0.0  # edge 0→2, op "a": the loss does not feel it
  kept_state, kept_records, _ = _update(h, zero_curvature="keep")
  pruned_state, _, _ = _update(h, zero_curvature="prune")
  switch = np.asarray(kept_records["c"]["ops"]["s"])
  # Literal eqs. 18–19: ω at its floor, so its switch explodes and it is kept.
  assert switch[1, 0] > 1e6 and switch[1, 0] == switch.max()
  assert bool(kept_state["keep"]["c"]["ops"][1, 0])
  assert not bool(pruned_state["keep"]["c"]["ops"][1, 0])
  # Everything informed is treated alike by both options.
  keep_a = np.asarray(kept_state["keep"]["c"]["ops"])
  keep_b = np.asarray(pruned_state["keep"]["c"]["ops"])
  mask = np.ones_like(keep_a)
  mask[1, 0] = False
  np.testing.assert_array_equal(keep_a[mask], keep_b[mask])


def test_rank_by_saliency_orders_by_w_squared_h():
  # Edge 0→1: op a has the larger |w| but tiny H; op b the larger w²H.
  w = np.full((1, 3, 2), 0.8, np.float32)
  h = np.ones((1, 3, 2), np.float32)
  w[0, 0] = [0.9, 0.5]
  h[0, 0] = [1e-3, 1.0]  # w²H: 8.1e-4 versus 0.25
  state_g, _, _ = _update(h, w, rank_by="gamma")
  state_s, _, _ = _update(h, w, rank_by="saliency")
  assert np.argmax(np.asarray(state_g["score"]["c"]["ops"][0])) == 0  # γ reads 1/H
  assert np.argmax(np.asarray(state_s["score"]["c"]["ops"][0])) == 1
  np.testing.assert_allclose(np.asarray(state_s["score"]["c"]["ops"]), w[0] ** 2 * h[0],
                             rtol=1e-6)


def test_edges_derivation_never_two_ops_on_one_edge():
  spec = CellSpec(("x", "y", "z"), 2, 2)  # inputs 0, 1; nodes 2, 3; 5 edges
  score = np.array([[9.0, 8.0, 0.1],   # 0→2: the two best pairs of node 2
                    [1.0, 0.5, 0.2],   # 1→2
                    [0.3, 7.0, 6.0],   # 0→3: two strong ops on one edge again
                    [0.2, 0.1, 0.4],   # 1→3
                    [5.0, 0.3, 0.2]])  # 2→3
  keep = np.ones_like(score, bool)
  pairs = derivation.derive_cell(score, keep, spec, k=2, rule="pairs")
  edges = derivation.derive_cell(score, keep, spec, k=2, rule="edges")
  assert [e for e in pairs["edges"] if e[2] == 2] == [["x", 0, 2], ["y", 0, 2]]
  for cell in (edges,):
    slots = [(e[1], e[2]) for e in cell["edges"]]
    assert len(slots) == len(set(slots))
  assert edges["edges"] == [["x", 0, 2], ["x", 1, 2], ["y", 0, 3], ["x", 2, 3]]
  with pytest.raises(ValueError, match="config.search.derivation"):
    derivation.derive_cell(score, keep, spec, rule="best")


def test_penalty_budget_is_what_one_round_can_move():
  search = ml_collections.ConfigDict(dict(lambda_w=0.01, learning_rate=0.05,
                                          penalty_budget=2.5, lambda_w_origin=0.02))
  lambdas = objective.penalty_lambdas(search, steps_per_round=140)
  assert lambdas["ops"] * 0.05 * 140 == pytest.approx(2.5)
  assert lambdas["origin"] == pytest.approx(2 * lambdas["ops"])  # the ratio is kept
  # The library's own optimizer and penalty gradient, no data term, 140 steps
  # from w = 3 with ω = 1: the scalar moves by exactly the budget.
  search.update(optimizer="sgd", momentum=0.0, grad_clip=0.0)
  optimizer = objective.make_optimizer(search)
  arch = {"c": {"origin": jnp.asarray([[3.0]]), "ops": jnp.asarray([[[3.0]]])}}
  omega = {"c": {"origin": jnp.ones((1,)), "ops": jnp.ones((1, 1))}}
  penalty = lambda a: lambdas["ops"] * objective.sparsity_penalty(a, omega, "cell_type")
  opt_state = optimizer.init(arch)
  for _ in range(140):
    updates, opt_state = optimizer.update(jax.grad(penalty)(arch), opt_state, arch)
    arch = optax.apply_updates(arch, updates)
  assert float(arch["c"]["ops"][0, 0, 0]) == pytest.approx(0.5, abs=1e-4)
  search.penalty_budget = 0.0
  assert objective.penalty_lambdas(search, 140) == {"origin": 0.02, "ops": 0.01}


def test_step5_resets_scalars_and_optimizer():
  arch = {"c": {"origin": jnp.asarray([[0.3, 0.0, -0.2]]),
                "ops": jnp.asarray([[[0.5, 0.0], [0.0, 0.0], [0.1, 0.7]]])}}
  masks = {"c": {"origin": jnp.asarray([[1.0, 0.0, 1.0]]),
                 "ops": jnp.asarray([[[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]])}}
  optimizer = optax.sgd(0.1, momentum=0.9)
  params = {"weights": {"w": jnp.ones(3)}, "arch": arch}
  opt_state = optimizer.init(params)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  _, opt_state = optimizer.update(grads, opt_state, params)  # momentum ≠ 0
  state = {"params": params, "opt_state": opt_state, "masks": masks}
  out = run.step5_reset(state, optimizer)
  for part in ("origin", "ops"):
    np.testing.assert_array_equal(np.asarray(out["params"]["arch"]["c"][part]),
                                  np.asarray(masks["c"][part]))
  for leaf in jax.tree_util.tree_leaves(out["opt_state"]):
    assert not np.any(np.asarray(leaf))  # fresh momentum
  np.testing.assert_array_equal(np.asarray(out["params"]["weights"]["w"]), np.ones(3))

