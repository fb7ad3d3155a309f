"""The NB201 evaluation network (`bayesnas_jax.evaluation.nb201_network`): training
mode moves the running statistics of every batch norm."""
import jax
import numpy as np

from tests.spaces.nb201_support import CLASSES, SIZE


def test_evaluation_network_updates_every_running_statistic():
  """Training mode moves the running statistics of every BN, on every edge of
  every cell (a regression: the first three edges' updates were overwritten by
  their old values), and eval mode then matches the training-mode output."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel,reimported
  from bayesnas_jax.evaluation import nb201_network  # pylint: disable=import-outside-toplevel
  genotype = ("nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3", "nor_conv_1x1",
              "nor_conv_3x3", "nor_conv_3x3")
  config = {"channels": 4, "cells_per_stage": 1, "num_classes": CLASSES,
            "bn_momentum": 1.0}
  params, stats = nb201_network.init(jax.random.PRNGKey(0), genotype, config)
  images = jax.random.normal(jax.random.PRNGKey(1), (16, SIZE, SIZE, 3), jnp.float32)
  train_logits, _, new = nb201_network.apply(params, stats, images, genotype, config,
                                             train=True)
  for cell_old, cell_new in zip(stats["cells"], new["cells"]):
    for e, (old, updated) in enumerate(zip(cell_old, cell_new)):
      assert not np.allclose(old["bn"]["mean"], updated["bn"]["mean"]), e
  # Momentum 1: the running statistics are this batch's (variance unbiased by
  # n/(n − 1)), so eval mode reproduces the training-mode logits closely.
  eval_logits, _, _ = nb201_network.apply(params, new, images, genotype, config,
                                          train=False)
  np.testing.assert_allclose(np.asarray(eval_logits), np.asarray(train_logits),
                             rtol=0.05, atol=0.05)
