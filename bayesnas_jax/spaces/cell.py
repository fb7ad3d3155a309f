"""A cell as data: a DAG of nodes whose edges carry candidate ops (SPEC §1).

Nodes 0 … num_inputs−1 are the cell inputs, then `num_nodes` intermediate nodes.
Edge j→k computes Σ_o w_jk^o · o(w_jk^0 · z_j) (eq. 1 with the origin scalar of
§4.2); node k sums its incoming edges. Edges are numbered as in DARTS: for each
intermediate node k in order, its inputs j = 0 … k−1.

For speed and compile time, all out-edges of one source node run as one
`jax.vmap` over stacked per-edge weights (they share their input), so a cell is
num_inputs + num_nodes − 1 batched op blocks rather than 14 × 7 op instances.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import nn
from bayesnas_jax.spaces.ops import OPS


class CellSpec(NamedTuple):
  ops: tuple
  num_nodes: int = 4
  num_inputs: int = 2

  @property
  def edges(self):
    return tuple((j, k) for k in range(self.num_inputs, self.num_inputs + self.num_nodes)
                 for j in range(k))

  @property
  def num_edges(self):
    return len(self.edges)

  def out_edges(self, source):
    return [e for e, (j, _) in enumerate(self.edges) if j == source]

  def in_edges(self, node):
    return [e for e, (_, k) in enumerate(self.edges) if k == node]

  @property
  def sources(self):
    return range(self.num_inputs + self.num_nodes - 1)

  @property
  def intermediate(self):
    return list(range(self.num_inputs, self.num_inputs + self.num_nodes))


def take(x, index):
  """x[index] along the leading axis for plain or probed x (a structural map)."""
  index = np.asarray(index)
  return nn.structural(lambda v: v[index], x)


def source_stride(spec: CellSpec, source: int, reduction: bool) -> int:
  return 2 if reduction and source < spec.num_inputs else 1


def init_cell_edges(key, spec: CellSpec, channels: int, reduction: bool, dtype):
  """Weights of every candidate op on every edge, stacked per source node."""
  weights = {}
  for source in spec.sources:
    stride = source_stride(spec, source, reduction)
    edges = spec.out_edges(source)
    per_op = {}
    for op_index, name in enumerate(spec.ops):
      op_key = jax.random.fold_in(jax.random.fold_in(key, source), op_index)
      keys = jax.random.split(op_key, len(edges))
      per_op[name] = jax.vmap(lambda k: OPS[name].init(k, channels, stride, dtype))(keys)
    weights[f"from_{source}"] = per_op
  return weights


def repeat_per_channel(scalars, channels):
  """[E] → [E·C], each edge's scalar repeated over its channel block."""
  return nn.structural(lambda v: jnp.repeat(v, channels, axis=-1), scalars)


def apply_cell_edges(weights, origin, op_scalars, inputs, spec: CellSpec, reduction: bool,
                     config):
  """Runs the cell DAG. origin [E] and op_scalars [E, O] are this cell's
  (already masked) architecture scalars; returns the intermediate nodes.

  The out-edges of one source run folded along channels (see `ops`)."""
  contributions = {k: [] for k in spec.intermediate}
  nodes = list(inputs)
  for source in spec.sources:
    if source >= spec.num_inputs:
      nodes.append(nn.add(*contributions[source]))
    edges = spec.out_edges(source)
    stride = source_stride(spec, source, reduction)
    x = nodes[source]
    channels = nn.value_of(x).shape[-1]
    # Every edge sees w⁰_e · x: tile x over the edges, scale each block.
    wide = nn.structural(lambda v, n=len(edges): jnp.tile(v, (1, 1, 1, n)), x)
    wide = nn.scale(wide, repeat_per_channel(take(origin, edges), channels))
    scalars = take(op_scalars, edges)
    outs = [nn.scale(OPS[name].apply(weights[f"from_{source}"][name], wide, stride, config),
                     repeat_per_channel(take_column(scalars, i), channels))
            for i, name in enumerate(spec.ops)]
    out = nn.add(*outs)
    for i, e in enumerate(edges):
      part = nn.structural(lambda v, i=i: v[..., i * channels:(i + 1) * channels], out)
      contributions[spec.edges[e][1]].append(part)
  last = spec.intermediate[-1]
  nodes.append(nn.add(*contributions[last]))
  return nodes[spec.num_inputs:]


def take_column(x, index):
  """x[:, index] for plain or probed x."""
  return nn.structural(lambda v: v[:, index], x)
