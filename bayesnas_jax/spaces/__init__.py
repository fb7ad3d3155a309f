"""Search spaces: each a `SearchSpace` (see `base`), built from `config.space`.

`make(space_config)` looks the constructor up by `space_config.name`;
`validate(space_config)` checks its fields (one-line errors naming the field).
"""
from __future__ import annotations

import importlib

from bayesnas_jax.spaces.base import SearchSpace, cell_specs

# name → module with make(space_config) and validate(space_config).
REGISTRY = {"darts": "bayesnas_jax.spaces.darts", "nb201": "bayesnas_jax.spaces.nb201",
            "rnn": "bayesnas_jax.spaces.rnn", "tree_pyramid": "bayesnas_jax.spaces.tree_pyramid"}


def _module(space_config):
  name = space_config.get("name", "")
  if name not in REGISTRY:
    raise ValueError(f"config.space.name: expected one of {sorted(REGISTRY)}, got {name!r}")
  return importlib.import_module(REGISTRY[name])


def validate(space_config):
  """Raises a one-line ValueError for the first bad field of `config.space`."""
  _module(space_config).validate(space_config)


def make(space_config) -> SearchSpace:
  """The `SearchSpace` named by `space_config.name`."""
  return _module(space_config).make(space_config)


__all__ = ["REGISTRY", "SearchSpace", "cell_specs", "make", "validate"]
