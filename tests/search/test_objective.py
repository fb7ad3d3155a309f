"""The search objective and its jitted steps (`bayesnas_jax.search.objective`): the
penalty budget, bf16 compute against float32, and the training step that also
returns the sampled curvature."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from configs import nb201_cifar10_search, quickstart
from bayesnas_jax import derivation, spaces
from bayesnas_jax.search import hard, objective
from bayesnas_jax.search.run import initial_state
from bayesnas_jax.spaces import darts


# `search.penalty_budget`: one round of SGD moves a scalar by the budget.


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


# bf16 compute with float32 curvature accumulation and prior update: γ and the
# derived genotype agree with float32 on a small problem.
#
# Tolerance (measured 2026-11-23 on this problem): the curvature of every
# architecture scalar within 10% relative of float32 (+ a floor of 2% of the
# largest entry); γ within 0.5% (the largest difference measured is 0.06%); the
# same derived genotype at every node whose float32 ranking is not a near-tie —
# where the k-th and (k+1)-th largest γ differ by more than 0.1% (here 3 of 4
# nodes per cell; the fourth has a margin of 0.003%, which bf16 may break either
# way).


def _config(dtype):
  config = quickstart.get_config()
  config.space.ops = ("skip_connect", "sep_conv_3x3")
  config.space.channels = 4
  config.space.layers = 2  # two reduction cells
  config.space.stem_multiplier = 1
  config.input.batch_size = 16
  config.search.curvature_pass = "after"
  # The recursion in bf16 (the tolerances below were measured for it), origin on
  # the edge input as then.
  config.search.curvature_source = "recursion"
  config.space.origin = "input"
  config.search.compute_dtype = dtype
  return config


def _gamma_and_genotype(dtype, batch):
  config = _config(dtype)
  space = spaces.make(config.space)
  state = initial_state(config, space, jax.random.PRNGKey(0), (8, 8, 3))
  _, _, curvature_step, _ = objective.make_steps(config, space)
  _, curvature = curvature_step(state.params, batch, state.masks,
                                  jax.random.PRNGKey(0))
  spec = darts.cell_spec(config.space)
  new_state, _, _ = hard.hard_update(
      state.params["arch"], curvature, state.prior, spec=spec, lambda_w=0.01,
      grouping="cell_type", dependency="full")
  cells = {kind: derivation.derive_cell(new_state.gamma[kind]["ops"],
                                        new_state.keep[kind]["ops"], spec)
           for kind in new_state.gamma}
  return curvature, new_state.gamma, cells


def test_bfloat16_matches_float32():
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8),
           "label": rng.integers(0, 10, (16,), dtype=np.int32)}
  h32, gamma32, cells32 = _gamma_and_genotype("float32", batch)
  h16, gamma16, cells16 = _gamma_and_genotype("bfloat16", batch)
  for leaf in jax.tree_util.tree_leaves(h16):
    assert leaf.dtype == jnp.float32  # accumulated in float32
  for a, b in zip(jax.tree_util.tree_leaves(h16), jax.tree_util.tree_leaves(h32)):
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(b).max() > 0
    np.testing.assert_allclose(a, b, rtol=0.1, atol=0.02 * np.abs(b).max())
  for a, b in zip(jax.tree_util.tree_leaves(gamma16), jax.tree_util.tree_leaves(gamma32)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=5e-3)
  spec = darts.cell_spec(_config("float32").space)
  decided = 0
  for kind in cells32:
    gamma = np.asarray(gamma32[kind]["ops"])
    for node in spec.intermediate:
      ranked = sorted((gamma[e, o] for e in spec.in_edges(node)
                       for o in range(len(spec.ops))), reverse=True)
      if len(ranked) > 2 and ranked[1] - ranked[2] <= 1e-3 * ranked[1]:
        continue  # a near-tie in float32 itself
      decided += 1
      assert (_inputs_of(cells16[kind], node) == _inputs_of(cells32[kind], node)), (kind, node)
  assert decided >= len(cells32) * spec.num_nodes // 2


def _inputs_of(cell, node):
  return sorted((op, source) for op, source, target in cell["edges"] if target == node)


# `search.curvature_source = "sampled"` with `curvature_pass = "during"`: the
# search's training step moves the weights exactly as the step without
# curvature, and returns the estimate.


def test_during_training_step_keeps_the_weights_path():
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8),
           "label": rng.integers(0, 10, (8,), dtype=np.int32)}
  results = {}
  for name, source, when in (("plain", "ggn", "after"), ("sampled", "sampled", "during")):
    config = nb201_cifar10_search.get_config("tiny")
    config.input.batch_size = 8
    config.search.curvature_source = source
    config.search.curvature_pass = when
    space = spaces.make(config.space)
    state = initial_state(config, space, jax.random.PRNGKey(0), (8, 8, 3))
    _, train_step, _, _ = objective.make_steps(config, space)
    penalty = objective.penalty_weights(state.prior.omega,
                                        objective.penalty_lambdas(config.search, 1))
    results[name] = train_step(state.params, state.opt_state, batch,
                               jax.random.PRNGKey(3), penalty, state.masks,
                               jnp.asarray(1.0))
  plain, sampled = results["plain"], results["sampled"]
  assert plain[3] is None
  close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                  rtol=1e-5, atol=1e-6)
  jax.tree_util.tree_map(close, sampled[0], plain[0])
  close(sampled[2]["loss"], plain[2]["loss"])
  curvature = np.asarray(ravel_pytree(sampled[3])[0])
  assert np.all(np.isfinite(curvature)) and np.all(curvature >= 0)
  assert curvature.max() > 0
