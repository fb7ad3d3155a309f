"""The tree-PyramidNet evaluation network (through `bayesnas_jax.evaluation.models`):
its weights are those counted for the genotype, and every batch norm keeps
running statistics."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bayesnas_jax.spaces import tree_pyramid as tp
from tests.spaces.tree_pyramid_support import config as _config


def test_evaluation_network_of_a_genotype():
  from bayesnas_jax.evaluation import models  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict({"name": "tree_pyramid", "cells_per_stage": 1,
                                      "alpha": 6.0, "num_classes": 3, "image_size": 8,
                                      "channels": 16})
  net = models.get(config)
  genotype = ((1, 2, 3), (2,), ())
  params, stats = net.init(jax.random.key(0), genotype, config)
  architecture = {"cells": [{"stage": s, "block": 1, "paths": list(p)}
                            for s, p in zip((1, 2, 3), genotype)]}
  weights = sum(int(np.size(a)) for a in jax.tree.leaves(params["weights"]))
  assert weights == tp.parameter_count(architecture, _config(alpha=6.0))
  # Every batch norm has a scale and a bias and running statistics of its width.
  assert set(params["bn"]) == set(stats) and "b2/final" not in stats  # empty cell: no norms
  images = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 3)), jnp.float32)
  logits, _, new = net.apply(params, stats, images, genotype, config, train=True)
  assert logits.shape == (4, 3)
  assert not np.allclose(new["stem"]["mean"], stats["stem"]["mean"])  # running averages move
  again, _, same = net.apply(params, new, images, genotype, config, train=False)
  assert again.shape == (4, 3) and same["stem"] is new["stem"]
