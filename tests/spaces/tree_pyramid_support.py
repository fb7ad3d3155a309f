"""A small tree-PyramidNet space config, shared by tests/spaces/test_tree_pyramid.py,
tests/evaluation/test_tree_network.py and tests/integration/test_tree_search_cli.py."""
import ml_collections


def config(n=1, alpha=6.0):
  return ml_collections.ConfigDict({"blocks_per_stage": n, "alpha": alpha, "num_classes": 3})
