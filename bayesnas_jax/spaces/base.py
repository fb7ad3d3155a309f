"""The interface a search space gives the search loop (one `SearchSpace`).

A space is a small `NamedTuple` of pure functions, as an optax transform is a
pair of them; one constructor per space lives in its own module
(`darts.make`, `nb201.make`), and the round loop (`search/run.py`,
`search/objective.py`) only ever calls these fields.

Conventions every space keeps:
* Architecture scalars (SPEC §1) are their own pytree, keyed by cell kind:
  `arch[kind] = {"origin": [n, E], "ops": [n, E, O]}` for the n cells of that
  kind that hold scalars (n = 1 when all cells share one genotype), in the
  edge order of `cells[kind]`. The penalty of eq. 21 groups a (edge, op)
  across the n cells; the HARD update (eqs. 17–20) reads the dependency graph
  for γ from `cells[kind]` (a `CellSpec`: edges, inputs).
* `apply(weights, arch, images, masks)` is built from `bayesnas_jax.nn`
  primitives, so `value_grad_curvature` gives the curvature of any loss of
  its logits w.r.t. the scalars.
* An *architecture* is the discrete result of a search, as plain JSON data
  (`derive` makes it, `export` writes it, `load_architecture` reads it back,
  `random_architecture` draws one uniformly from the space).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import numpy as np


class SearchSpace(NamedTuple):
  """A search space as the round loop sees it.

  Fields:
    name: the registry name (`config.space.name`).
    cells: {kind: CellSpec}, the DAG of each kind of cell (groups of scalars
      and their dependency graph for γ).
    init_weights: (key, image_shape [H, W, C]) → network weights W (any
      pytree of float arrays, or one flat vector).
    init_arch: () → architecture scalars, all 1 (Algorithm 1).
    apply: (weights, arch, images NHWC, masks or None) → logits; pure.
    derive: (prior_state, search_config) → architecture (JSON data):
      pruning by γ, then the space's rule for a discrete cell. `prior_state`
      is the search's `prior.HardState` (per group γ, keep flags and the rank
      score, `HardState.rank`).
    architecture_masks: (architecture, arch) → 0/1 masks shaped like `arch`
      that switch on exactly the architecture's (edge, op) pairs.
    export: (workdir, architecture, prior_state, search_config) → dict of
      summary fields; writes genotype.json, plots and the space's own files.
    load_architecture: path → architecture (one-line ValueError if bad).
    random_architecture: numpy Generator → an architecture drawn uniformly.
    parameter_count: architecture → parameters of the derived network at
      search size.
  """
  name: str
  cells: Mapping[str, Any]
  init_weights: Callable
  init_arch: Callable
  apply: Callable
  derive: Callable
  architecture_masks: Callable
  export: Callable
  load_architecture: Callable
  random_architecture: Callable
  parameter_count: Callable


def cell_specs(space: SearchSpace):
  """`space.cells` as a hashable tuple of (kind, CellSpec), sorted by kind (a
  static argument of the jitted HARD update)."""
  return tuple(sorted(space.cells.items()))


def group_values(array, grouping):
  """Per-group values of a per-group or per-member array: the mean over the
  stacked cells for grouping "none" (eq. 16), as is for "cell_type"."""
  array = np.asarray(array)
  return array.mean(axis=0) if grouping == "none" else array


def group_keep(array, grouping):
  """Per-group keep flags: kept in any stacked cell for grouping "none"."""
  array = np.asarray(array)
  return array.any(axis=0) if grouping == "none" else array
