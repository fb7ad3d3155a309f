"""Pieces of the search loop (`bayesnas_jax.search.run`): step 5 of Algorithm 1
(`search.retrain_between_rounds`: w = 1 on the survivors, 0 on the pruned, a
fresh optimizer) and the curvature's mean and standard error over batches."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnas_jax.search import run


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
  state = run.SearchState(params=params, opt_state=opt_state, prior=None, masks=masks,
                          curvature=run.CurvatureSums.zeros(arch), eval_sums=jnp.zeros(3))
  out = run.step5_reset(state, optimizer)
  for part in ("origin", "ops"):
    np.testing.assert_array_equal(np.asarray(out.params["arch"]["c"][part]),
                                  np.asarray(masks["c"][part]))
  for leaf in jax.tree_util.tree_leaves(out.opt_state):
    assert not np.any(np.asarray(leaf))  # fresh momentum
  np.testing.assert_array_equal(np.asarray(out.params["weights"]["w"]), np.ones(3))


def test_curvature_mean_and_standard_error_over_batches():
  batches = np.array([[1.0, 4.0], [3.0, 4.0], [2.0, 7.0], [6.0, 1.0]])
  total = {"x": jnp.asarray(batches.sum(0), jnp.float32)}
  squares = {"x": jnp.asarray((batches ** 2).sum(0), jnp.float32)}
  mean, se = run.curvature_mean_and_se(total, squares, jnp.asarray(4))
  np.testing.assert_allclose(np.asarray(mean["x"]), batches.mean(0), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(se["x"]), batches.std(0, ddof=1) / 2.0, rtol=1e-5)
  _, one = run.curvature_mean_and_se(total, squares, jnp.asarray(1))
  assert np.all(np.asarray(one["x"]) == 0)


def test_curvature_sums_add_batches():
  """The search's running sums (`CurvatureSums`) give the same mean and
  standard error as the sums taken here, batch by batch."""
  batches = np.array([[1.0, 4.0], [3.0, 4.0], [2.0, 7.0], [6.0, 1.0]])
  sums = run.CurvatureSums.zeros({"x": jnp.zeros(2)})
  for row in batches:
    sums = sums.add({"x": jnp.asarray(row)})
  assert int(sums.count) == 4
  mean, se = sums.mean_and_se()
  np.testing.assert_allclose(np.asarray(mean["x"]), batches.mean(0), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(se["x"]), batches.std(0, ddof=1) / 2.0, rtol=1e-5)
