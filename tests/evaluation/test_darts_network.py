"""The DARTS evaluation network (`bayesnas_jax.evaluation.darts_network`): no
drop-path and no auxiliary head in eval mode, and batch-norm running statistics
updated in training and used at eval."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax.evaluation import darts_network
from tests.evaluation.genotype_support import MODEL, THREE_INPUTS


@pytest.fixture(scope="module")
def forward():
  """Jitted train- and eval-mode forward passes of THREE_INPUTS at MODEL."""
  genotype = darts_network.canonical(THREE_INPUTS)

  def run(params, stats, images, key, drop_prob, train_mode):
    return darts_network.apply(params, stats, images, genotype, MODEL, train=train_mode,
                               key=key, drop_path_prob=drop_prob)

  params, stats = jax.jit(lambda key: darts_network.init(key, genotype, MODEL))(
      jax.random.PRNGKey(0))
  images = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 3), jnp.float32)
  return jax.jit(run, static_argnums=5), params, stats, images


def test_eval_mode_has_no_drop_path_and_no_aux(forward):
  run, params, stats, images = forward
  key1, key2 = jax.random.PRNGKey(3), jax.random.PRNGKey(4)
  logits_a, aux_a, stats_a = run(params, stats, images, key1, 0.5, False)
  logits_b, aux_b, _ = run(params, stats, images, key2, 0.0, False)
  assert aux_a is None and aux_b is None
  np.testing.assert_array_equal(logits_a, logits_b)
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(
      lambda a, b: bool(jnp.array_equal(a, b)), stats_a, stats))
  # In training, drop-path draws from the key, and the auxiliary head is on.
  train_a, aux, _ = run(params, stats, images, key1, 0.5, True)
  train_b, _, _ = run(params, stats, images, key2, 0.5, True)
  train_c, _, _ = run(params, stats, images, key2, 0.0, True)
  train_d, _, _ = run(params, stats, images, key1, 0.0, True)
  assert aux.shape == (6, 3)
  assert not np.allclose(train_a, train_b)
  np.testing.assert_array_equal(train_c, train_d)


def test_running_statistics_are_updated_in_training_and_used_at_eval(forward):
  run, params, stats, images = forward
  _, _, new_stats = run(params, stats, images, None, 0.0, True)
  # Stem BN: running mean 0 → 0.1·batch mean of the stem conv output.
  conv = jax.lax.conv_general_dilated(images, params["stem"]["w"], (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(new_stats["stem"]["bn"]["mean"],
                             0.1 * jnp.mean(conv, axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  # Eval mode uses the running statistics: an example's logits do not depend on
  # the rest of the batch, and they change with the statistics.
  full, _, _ = run(params, new_stats, images, None, 0.0, False)
  part, _, _ = run(params, new_stats, images[:2], None, 0.0, False)
  np.testing.assert_allclose(full[:2], part, rtol=1e-4, atol=1e-5)
  before, _, _ = run(params, stats, images, None, 0.0, False)
  assert not np.allclose(before, full)
  train_full, _, _ = run(params, stats, images, None, 0.0, True)
  train_part, _, _ = run(params, stats, images[:2], None, 0.0, True)
  assert not np.allclose(train_full[:2], train_part)
