"""`bayesnas_jax.hard_prior`, the HARD prior for a user's own loop, on hand-made cases."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bayesnas_jax import hard_prior, nn, prior
from bayesnas_jax import nnx as bnx

LAMBDA = 0.01


def _scalars():
  return {"block1": {"w": jnp.asarray([0.8, 0.02, -0.5])}, "block2": {"w": jnp.asarray(0.3)}}


def _curvature():
  return {"block1": {"w": jnp.asarray([0.2, 0.5, -0.1])}, "block2": {"w": jnp.asarray(0.05)}}


def test_paths_and_init():
  scalars = _scalars()
  assert hard_prior.paths(scalars) == ["block1/w", "block2/w"]
  state = hard_prior.init(scalars)
  np.testing.assert_array_equal(state.gamma["block1"]["w"], 1.0)
  assert bool(jnp.all(state.keep["block1"]["w"])) and int(state.rounds) == 0


def test_independent_scalars_are_plain_ard():
  scalars, curvature = _scalars(), _curvature()
  state = hard_prior.update(hard_prior.init(scalars), scalars, curvature, lambda_w=LAMBDA)
  for name in ("block1", "block2"):
    w, h = scalars[name]["w"], jnp.maximum(curvature[name]["w"], 0)
    expected = prior.update(w, h, 1.0, LAMBDA)
    np.testing.assert_allclose(state.gamma[name]["w"], expected.switch, rtol=1e-6)
    np.testing.assert_allclose(state.omega[name]["w"], expected.omega, rtol=1e-6)
  # The negative curvature is clamped: ω at its floor, s huge, kept; the small
  # scalar with curvature is pruned (γ ≈ 0.02 ≤ 1/(2πe)).
  np.testing.assert_array_equal(state.keep["block1"]["w"], [True, False, True])
  assert int(state.rounds) == 1


def test_dependency_is_h_of_own_switch_and_parents_information():
  scalars, curvature = _scalars(), _curvature()
  state = hard_prior.update(hard_prior.init(scalars), scalars, curvature, lambda_w=LAMBDA,
                            dependency={"block2/w": ("block1/w",)})
  s1 = prior.update(scalars["block1"]["w"], jnp.maximum(curvature["block1"]["w"], 0), 1.0,
                    LAMBDA).switch
  s2 = prior.update(scalars["block2"]["w"], curvature["block2"]["w"], 1.0, LAMBDA).switch
  expected = 1.0 / (1.0 / float(s2) + 1.0 / float(jnp.sum(s1)))
  np.testing.assert_allclose(state.gamma["block2"]["w"], expected, rtol=1e-6)
  np.testing.assert_allclose(state.gamma["block1"]["w"], s1, rtol=1e-6)  # parents: plain


def test_pruned_stays_pruned_and_is_masked_out_of_penalty_and_choice():
  scalars, curvature = _scalars(), _curvature()
  state = hard_prior.update(hard_prior.init(scalars), scalars, curvature, lambda_w=LAMBDA)
  masked = hard_prior.apply_masks(scalars, state)
  np.testing.assert_array_equal(masked["block1"]["w"], [0.8, 0.0, -0.5])
  # A second round with large curvature would keep it, but pruning is for good.
  state2 = hard_prior.update(state, scalars, jax_tree_full(curvature, 10.0), lambda_w=LAMBDA)
  assert not bool(state2.keep["block1"]["w"][1])
  expected = LAMBDA * sum(float(o) * abs(float(w)) for o, w, k in zip(
      state.omega["block1"]["w"], scalars["block1"]["w"], state.keep["block1"]["w"]) if k)
  expected += LAMBDA * float(state.omega["block2"]["w"]) * 0.3
  np.testing.assert_allclose(hard_prior.penalty(scalars, state, LAMBDA), expected, rtol=1e-6)
  # Highest curvature among kept: entry 1 has the largest H but is pruned.
  best = hard_prior.select(hard_prior.scores(scalars, curvature, state), state, k=3)
  np.testing.assert_array_equal(best["block1"]["w"], [0, 2, -1])


def jax_tree_full(tree, value):
  return {k: {"w": jnp.full_like(v["w"], value)} for k, v in tree.items()}


@pytest.mark.parametrize("dependency, words", [
    ({"block3/w": ("block1/w",)}, "'block3/w' is not a leaf"),
    ({"block1/w": ("block2/w",), "block2/w": ("block1/w",)}, "cycle"),
])
def test_bad_dependency_is_one_line(dependency, words):
  scalars = _scalars()
  with pytest.raises(ValueError, match=words) as err:
    hard_prior.update(hard_prior.init(scalars), scalars, _curvature(), lambda_w=LAMBDA,
                      dependency=dependency)
  assert "\n" not in str(err.value)


def test_boundary_checks_catch_shape_and_nan():
  scalars = _scalars()
  state = hard_prior.init(scalars)
  bad_shape = {"block1": {"w": jnp.zeros(4)}, "block2": {"w": jnp.asarray(0.1)}}
  with pytest.raises(AssertionError):
    hard_prior.update(state, scalars, bad_shape, lambda_w=LAMBDA)
  nan = {"block1": {"w": jnp.asarray([0.1, math.nan, 0.1])}, "block2": {"w": jnp.asarray(0.1)}}
  with pytest.raises(AssertionError):
    hard_prior.update(state, scalars, nan, lambda_w=LAMBDA)
  with pytest.raises(ValueError, match="lambda_w"):
    hard_prior.update(state, scalars, _curvature(), lambda_w=0.0)


# ----------------------------------------------------------------------------
# The prior as optax transformations.

MASK = {"weights": False, "arch": True}


def _after_one_round():
  """Params (weights and scalars), and a state with ω ≠ 1 and one scalar pruned."""
  scalars = _scalars()
  state = hard_prior.update(hard_prior.init(scalars), scalars, _curvature(), lambda_w=LAMBDA)
  return {"weights": {"k": jnp.asarray([0.5, -0.2])}, "arch": scalars}, state


def test_l1_penalty_adds_the_penalty_gradient_to_the_scalars_only():
  params, state = _after_one_round()
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)
  tx = hard_prior.l1_penalty(LAMBDA, MASK)
  updates, _ = tx.update(grads, tx.init(params), params, prior_state=state)
  penalty_grad = jax.grad(hard_prior.penalty)(params["arch"], state, LAMBDA)  # eq. 16
  chex.assert_trees_all_close(updates["arch"], jax.tree.map(jnp.add, grads["arch"],
                                                            penalty_grad), rtol=1e-6)
  chex.assert_trees_all_equal(updates["weights"], grads["weights"])
  assert float(updates["arch"]["block1"]["w"][1]) == 0.1  # pruned: no penalty
  assert float(updates["arch"]["block1"]["w"][0]) > 0.1


def test_chain_trains_weights_plainly_and_keeps_pruned_scalars_at_zero():
  params, state = _after_one_round()
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)
  tx = optax.chain(hard_prior.l1_penalty(LAMBDA, MASK), optax.sgd(0.5),
                   hard_prior.zero_pruned(MASK))
  updates, _ = tx.update(grads, tx.init(params), params, prior_state=state)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new["weights"]["k"], params["weights"]["k"] - 0.05)
  masked = hard_prior.apply_masks(params["arch"], state)
  penalty_grad = jax.grad(hard_prior.penalty)(params["arch"], state, LAMBDA)
  want = jax.tree.map(lambda w, g, k: jnp.where(k, w - 0.5 * (0.1 + g), 0), masked,
                      penalty_grad, state.keep)
  chex.assert_trees_all_close(new["arch"], want, rtol=1e-6)
  assert float(new["arch"]["block1"]["w"][1]) == 0.0


def _one_line(err, *words):
  message = str(err.value)
  assert "\n" not in message, message
  for word in words:
    assert word in message, message


def test_transformations_name_what_they_expected():
  params, state = _after_one_round()
  grads = jax.tree.map(jnp.zeros_like, params)
  for tx in (hard_prior.l1_penalty(LAMBDA, MASK), hard_prior.zero_pruned(MASK)):
    with pytest.raises(ValueError) as err:
      tx.update(grads, tx.init(params), params)
    _one_line(err, "prior_state=<HardState>")
  tx = hard_prior.l1_penalty(LAMBDA)  # no mask: the weights are in the way
  with pytest.raises(ValueError) as err:
    tx.update(grads, tx.init(params), params, prior_state=state)
  _one_line(err, "weights/k[2]", "expected the architecture scalars of prior_state, "
            "[block1/w[3], block2/w[]]")


def test_update_names_the_expected_structure_and_dtype():
  arch = bnx.MixedOp([nn.relu, nn.tanh])
  scalars = nnx.to_pure_dict(nnx.state(arch, bnx.ArchParam))
  curvature = nnx.state(arch, bnx.ArchParam)  # an nnx.State, not converted
  with pytest.raises(ValueError) as err:
    hard_prior.update(hard_prior.init(scalars), scalars, curvature, lambda_w=LAMBDA)
  _one_line(err, "expected the structure of the scalars, [w[2]]", "nnx.to_pure_dict")
  with pytest.raises(ValueError) as err:
    hard_prior.init({"w": jnp.ones(3, jnp.int32)})
  _one_line(err, "'w' has dtype int32; expected a float array")


def test_every_caller_shares_one_state_type():
  """The user's loop, the cell search and the compression keep the prior in the
  same `prior.HardState`, and each update counts itself."""
  from bayesnas_jax.compress import groups  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.search import hard  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.spaces.cell import CellSpec  # pylint: disable=import-outside-toplevel
  spec = CellSpec(ops=("a", "b"), num_nodes=2, num_inputs=1)
  arch = {"c": {"origin": jnp.ones((1, spec.num_edges)),
                "ops": jnp.ones((1, spec.num_edges, 2))}}
  curvature = jax.tree_util.tree_map(lambda a: 0.5 * a, arch)
  mine = hard_prior.update(hard_prior.init(_scalars()), _scalars(), _curvature(),
                           lambda_w=LAMBDA)
  search, _, _ = hard.hard_update(arch, curvature, hard.init_prior(arch, "cell_type"),
                                  spec=spec, lambda_w=LAMBDA, grouping="cell_type",
                                  dependency="full")
  layer, _ = groups.update(jnp.ones((4, 3)), jnp.ones((4, 3)),
                           groups.init_state((4, 3), ["row"]), LAMBDA)
  for state in (mine, search, layer):
    assert type(state) is prior.HardState  # pylint: disable=unidiomatic-typecheck
    assert int(state.rounds) == 1
  assert hard_prior.HardState is prior.HardState
