"""Evaluation networks by name (`config.model.name`): what `train.py` trains.

Each entry gives `load(path)` (a genotype file → the network's hashable
genotype), `init(key, genotype, model_config)` → (params, batch_stats),
`apply(params, batch_stats, images, genotype, model_config, *, train, key,
drop_path_prob)` → (logits, aux_logits or None, batch_stats) and
`genotype_dict(genotype)` (the JSON written to summary.json).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from bayesnas_jax import genotypes
from bayesnas_jax.evaluation import darts_network, nb201_network, tree_network


class EvalModel(NamedTuple):
  name: str
  load: Callable
  init: Callable
  apply: Callable
  genotype_dict: Callable


def _darts_genotype_dict(genotype):
  out = {}
  for kind, edges, concat in genotype:
    out[kind] = [list(edge) for edge in edges]
    out[f"{kind}_concat"] = list(concat)
  return out


def _darts_load(path):
  genotype = genotypes.load_genotype(path)
  try:
    return darts_network.canonical(genotype)
  except ValueError as err:
    raise ValueError(f"genotype file {path}: {err}") from None


MODELS = {
    "darts": EvalModel("darts", _darts_load, darts_network.init, darts_network.apply,
                       _darts_genotype_dict),
    "nb201": EvalModel("nb201", nb201_network.load, nb201_network.init, nb201_network.apply,
                       nb201_network.genotype_dict),
    "tree_pyramid": EvalModel("tree_pyramid", tree_network.load, tree_network.init,
                              tree_network.apply, tree_network.genotype_dict),
}


def get(model_config) -> EvalModel:
  name = model_config.get("name", "darts")
  if name not in MODELS:
    raise ValueError(f"config.model.name: expected one of {sorted(MODELS)}, got {name!r}")
  return MODELS[name]
