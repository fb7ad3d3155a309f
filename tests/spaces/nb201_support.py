"""Shared by the NB201 tests (tests/spaces/test_nb201.py, test_nb201_discrete.py,
tests/evaluation/test_nb201_network.py, tests/test_curvature_ggn.py): the op set and
NB201's edge order written out, small space configs, and an NB201 string with its
edges. (The tiny float64 batch `tiny_batch` is a fixture of tests/conftest.py.)"""
import jax
import jax.numpy as jnp
import ml_collections

OPS = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# NB201's edge order, written out: node k's inputs j = 0 … k−1, node after node.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
BATCH, SIZE, CLASSES = 4, 8, 3


def config(cells_per_stage=2, channels=4):
  return ml_collections.ConfigDict(dict(
      name="nb201", ops=list(OPS), channels=channels, cells_per_stage=cells_per_stage,
      num_classes=CLASSES, remat=False))


EXAMPLE = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
           "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
EXAMPLE_EDGES = [["nor_conv_3x3", 0, 1], ["nor_conv_3x3", 0, 2], ["avg_pool_3x3", 1, 2],
                 ["skip_connect", 0, 3], ["nor_conv_3x3", 1, 3], ["skip_connect", 2, 3]]


def nb201_config(ops, origin="input", channels=4):
  return ml_collections.ConfigDict(dict(
      name="nb201", ops=list(ops), channels=channels, cells_per_stage=1, num_classes=3,
      remat=False, origin=origin))


def float64(tree):
  return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)
