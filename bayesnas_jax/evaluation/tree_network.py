"""The rebuilt tree-cell PyramidNet as an evaluation network (`config.model.name
= "tree_pyramid"`): the kept paths of a search's genotype.json, trained from
scratch, with affine batch norm and running statistics (`spaces.tree_pyramid`
builds it with `kept`; this module adds the norm layers' state)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from bayesnas_jax import nn
from bayesnas_jax.evaluation import layers
from bayesnas_jax.spaces import tree_pyramid


def _space(config):
  return ml_collections.ConfigDict({"blocks_per_stage": config["cells_per_stage"],
                                    "alpha": config["alpha"],
                                    "num_classes": config["num_classes"]})


def canonical(genotype):
  """One tuple of kept path ids per block (hashable)."""
  if isinstance(genotype, tuple):
    return genotype
  return tuple(tree_pyramid.kept_paths(genotype))


def genotype_dict(genotype):
  return {"kept_paths": [list(paths) for paths in genotype]}


def load(path):
  """The kept paths per block of a tree search's genotype.json."""
  import json  # pylint: disable=import-outside-toplevel
  try:
    with open(path, encoding="utf-8") as f:
      cells = json.load(f)["cells"]
    kept = tuple(tuple(int(p) for p in cell["paths"]) for cell in cells)
  except (OSError, ValueError, KeyError, TypeError) as err:
    raise ValueError(f"genotype file {path}: expected {{\"cells\": [{{\"stage\", \"block\", "
                     f"\"paths\"}}, ...]}} ({type(err).__name__})") from None
  if any(not 1 <= p <= tree_pyramid.NUM_PATHS for paths in kept for p in paths):
    raise ValueError(f"genotype file {path}: path ids must be 1..{tree_pyramid.NUM_PATHS}")
  return kept


def _norm_shapes(genotype, config, image_size, in_channels, dtype):
  """{name: channels} of every batch norm of the rebuilt network."""
  shapes = {}

  def record(name, x):
    shapes[name] = nn.value_of(x).shape[-1]
    return x

  space = _space(config)
  weights = jax.eval_shape(lambda: tree_pyramid.init_weights(0, space, kept=list(genotype),
                                                             in_channels=in_channels,
                                                             dtype=dtype))
  images = jax.ShapeDtypeStruct((2, image_size, image_size, in_channels), dtype)
  jax.eval_shape(lambda w, x: tree_pyramid.apply(w, None, x, space, kept=list(genotype),
                                                 norm=record), weights, images)
  return shapes


def init(key, genotype, config, dtype=jnp.float32):
  """(params, batch_stats) of the rebuilt network of `genotype`."""
  genotype = canonical(genotype)
  blocks = 3 * config["cells_per_stage"]
  if len(genotype) != blocks:
    raise ValueError(f"genotype: {len(genotype)} cells for a network of {blocks} blocks "
                     f"(config.model.cells_per_stage = {config['cells_per_stage']})")
  try:  # the weights are drawn on the host (`spaces.ops.numpy_rng`)
    seed = int(jax.random.randint(key, (), 0, 2 ** 31 - 1))
  except jax.errors.ConcretizationTypeError:  # traced for shapes only (counting)
    seed = 0
  params = {"weights": tree_pyramid.init_weights(seed, _space(config), kept=list(genotype),
                                                 in_channels=config.get("in_channels", 3),
                                                 dtype=dtype), "bn": {}}
  stats = {}
  for name, channels in _norm_shapes(genotype, config, config.get("image_size", 32),
                                     config.get("in_channels", 3), dtype).items():
    params["bn"][name], stats[name] = layers.bn_init(channels, dtype)
  return params, stats


def apply(params, batch_stats, images, genotype, config, *, train, key=None,
          drop_path_prob=0.):
  """(logits, None, new batch_stats); train=True uses batch statistics and moves
  the running averages."""
  del key, drop_path_prob
  genotype = canonical(genotype)
  ctx = layers.Context(bool(train), float(config.get("bn_momentum", 0.1)), "auto",
                       jnp.asarray(0.0))
  new = {}

  def norm(name, x):
    y, new[name] = layers.bn(params["bn"][name], batch_stats[name], x, ctx)
    return y

  logits = tree_pyramid.apply(params["weights"], None, images, _space(config),
                              kept=list(genotype), norm=norm)
  return logits, None, new
