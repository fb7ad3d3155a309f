"""Proxyless path search on CIFAR-10: TreeCell-A in every bottleneck of PyramidNet
(paper §6.2; `bayesnas_jax.spaces.tree_pyramid`).

The paper's settings: 3 stages × 18 bottleneck blocks, α = 84, each 3×3 conv a
TreeCell-A with 9 paths and its own scalars (grouping "none"), batch 32, SGD with
momentum 0.9 at a fixed lr 0.1, λ_w = 1e-2 per path, one round of one epoch. The
scalars' curvature comes from the one-pass recursion: the exact sources take one
pass per scalar and batch, and this network has 972 of them. The derived network
is `genotype.json` ({"cells": [{"stage", "block", "paths"}, ...]}), one plot per
stage in `plots/`, and its parameter count in summary.json.

  python -m launch.main --config=configs/tree_pyramidnet_cifar10_search.py \\
      --config.data.path=CIFAR10_DIR --workdir=workdirs/tree_search

Presets:
  :tiny  N = 1 block per stage, α = 12, 2,048 training images at 16×16, 3 rounds
         at the paper's L1 budget per round (`search.penalty_budget` = 1.56: one
         CIFAR-10 epoch at batch 32 is 1,562 steps × lr 0.1 × λ_w 0.01; the 64
         steps of a tiny round would give 0.06 and prune nothing): about a minute
         on a 2-core CPU.
"""
from configs import darts_cifar10_search

PRESETS = ("tiny",)


def get_config(arg=None):
  if arg and arg not in PRESETS:
    raise ValueError(f"config preset: expected one of {PRESETS}, got {arg!r}")
  config = darts_cifar10_search.get_config()
  config.space = config.space.__class__()
  config.space.name = "tree_pyramid"
  config.space.blocks_per_stage = 18
  config.space.alpha = 84.0
  config.space.num_classes = 10
  config.space.origin = "output"  # the scalars multiply each path's leaf output
  config.input.batch_size = 32
  config.search.learning_rate = 0.1
  config.search.lambda_w = 0.01
  config.search.grouping = "none"  # no sharing: every cell its own scalars
  config.search.curvature_source = "recursion"
  config.search.curvature_batches = 10
  config.search.rank_by = "gamma"  # the derivation keeps what survives pruning
  if arg == "tiny":
    config.space.blocks_per_stage = 1
    config.space.alpha = 12.0
    config.input.image_size = 16
    config.input.train_examples = 2048
    config.input.test_examples = 512
    config.log_every_steps = 10
    config.search.curvature_batches = 4
    config.search.rounds = 3
    config.search.penalty_budget = 1.56
  return config
