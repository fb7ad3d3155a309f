"""A cell as data: a DAG of nodes whose edges carry candidate ops (SPEC §1).

Nodes 0 … num_inputs−1 are the cell inputs, then `num_nodes` intermediate nodes.
Edge j→k computes Σ_o w_jk^o · o(w_jk^0 · z_j) (eq. 1 with the origin scalar of
§4.2); node k sums its incoming edges. Edges are numbered as in DARTS: for each
intermediate node k in order, its inputs j = 0 … k−1.

For speed and compile time, edges run folded along channels with stacked
per-edge weights (see `ops`), and a cell compiles one or two op blocks whatever
its size: a `lax.scan` body over source nodes, plus, when the inputs are not
scanned, one block for the out-edges of the cell inputs (see
`apply_cell_edges`). Weights are stored per source node,
`weights["from_j"][op]` stacked over j's out-edges.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

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


def _concat_edges(trees):
  """Per-op weight trees of several sources joined along their edge axis."""
  return jax.tree_util.tree_map(
      lambda *leaves: nn.structural(lambda *v: jnp.concatenate(v, 0), *leaves), *trees,
      is_leaf=nn.is_probed)


def _pad_and_stack(trees, slots):
  """Weight trees with E_t ≤ slots edges → one tree [T, slots, ...], zero-padded."""
  def pad(v):
    return jnp.pad(v, [(0, slots - v.shape[0])] + [(0, 0)] * (v.ndim - 1))
  return jax.tree_util.tree_map(
      lambda *leaves: nn.structural(lambda *v: jnp.stack([pad(u) for u in v]), *leaves),
      *trees, is_leaf=nn.is_probed)


def _edge_block(weights, x, origin, op_scalars, spec: CellSpec, stride, config):
  """Σ_o w^o_e · o(w⁰_e · x_e) for E edges folded along channels.

  x: [N, H, W, E·C] (edge e's input in channel block e); origin [E];
  op_scalars [E, O]; weights: per op, stacked over the E edges."""
  edges = nn.value_of(origin).shape[0]
  channels = nn.value_of(x).shape[-1] // edges
  x = nn.scale(x, repeat_per_channel(origin, channels))
  outs = [nn.scale(OPS[name].apply(weights[name], x, stride, config),
                   repeat_per_channel(take_column(op_scalars, i), channels))
          for i, name in enumerate(spec.ops)]
  return nn.add(*outs)


def tile_channels(x, times):
  return nn.structural(lambda v: jnp.tile(v, (1,) * (v.ndim - 1) + (times,)), x)


def apply_cell_edges(weights, origin, op_scalars, inputs, spec: CellSpec, reduction: bool,
                     config):
  """Runs the cell DAG. origin [E] and op_scalars [E, O] are this cell's
  (already masked) architecture scalars; returns the intermediate nodes.

  A `lax.scan` visits source nodes in order; each step runs that node's
  out-edges folded along channels in a fixed number of edge slots (padding
  gets zero weights and scalars and lands in discarded rows), and node sums
  accumulate in a carry of node rows. Without `config.scan_inputs` (and
  always in reduction cells, whose input edges have stride 2) the out-edges
  of the cell inputs run first as one block and the scan covers the
  intermediate sources with num_nodes − 1 slots: two op blocks to compile per
  cell. With `scan_inputs` on in a normal cell the inputs join the scan
  (num_nodes slots): one block to compile, at the cost of computing padded
  slots (20 slots for 14 edges in the DARTS cell)."""
  n_in, n_nodes = spec.num_inputs, spec.num_nodes
  stride = 2 if reduction else 1
  scan_inputs = bool(config.get("scan_inputs", False)) and not reduction
  first = 0 if scan_inputs else n_in  # first scanned source
  slots = n_nodes if scan_inputs else n_nodes - 1
  sources = list(range(first, n_in + n_nodes - 1))
  # Row r of the carry holds node r + offset; offset = 0 keeps the inputs in
  # rows 0 … n_in − 1 when they are scanned.
  offset = 0 if scan_inputs else n_in
  starts = [max(s + 1, n_in) - offset for s in sources]
  rows = max([n_in + n_nodes - offset] + [start + slots for start in starts])
  if scan_inputs:
    acc = nn.structural(
        lambda *v: jnp.concatenate([jnp.stack(v), jnp.zeros((rows - n_in,) + v[0].shape,
                                                             v[0].dtype)]), *inputs)
    acc = nn.as_probed(acc, nn.mode_of(*jax.tree_util.tree_leaves(
        (weights, origin, op_scalars), is_leaf=nn.is_probed)))
  else:
    # All out-edges of the cell inputs (each input feeds every node) as one block.
    in_edges = [e for s in range(n_in) for e in spec.out_edges(s)]
    wide = nn.concat([tile_channels(x, n_nodes) for x in inputs])
    out = _edge_block(_concat_edges([weights[f"from_{s}"] for s in range(n_in)]), wide,
                      take(origin, in_edges), take(op_scalars, in_edges), spec, stride,
                      config)

    def first_rows(v):
      n, h, w, _ = v.shape
      v = v.reshape(n, h, w, n_in, n_nodes, -1).sum(3)
      v = jnp.moveaxis(v, 3, 0)
      return jnp.pad(v, [(0, rows - n_nodes)] + [(0, 0)] * 4)

    acc = nn.structural(first_rows, out)
  if sources and slots:
    padded = np.full((len(sources), slots), spec.num_edges)  # index of a zero scalar
    for t, s in enumerate(sources):
      padded[t, :len(spec.out_edges(s))] = spec.out_edges(s)
    with_zero = lambda a: nn.structural(
        lambda v: jnp.concatenate([v, jnp.zeros((1,) + v.shape[1:], v.dtype)]), a)
    xs = (jnp.asarray(sources) - offset, jnp.asarray(starts),
          _pad_and_stack([weights[f"from_{s}"] for s in sources], slots),
          take(with_zero(origin), padded), take(with_zero(op_scalars), padded))

    def step(acc, xs):
      row, start, step_weights, step_origin, step_ops = xs
      x = nn.structural(lambda a: lax.dynamic_index_in_dim(a, row, keepdims=False), acc)
      out = _edge_block(step_weights, tile_channels(x, slots), step_origin, step_ops,
                        spec, 1, config)

      def accumulate(a, o):
        n, h, w, _ = o.shape
        o = jnp.moveaxis(o.reshape(n, h, w, slots, -1), 3, 0)
        index = (start, 0, 0, 0, 0)
        return lax.dynamic_update_slice(a, lax.dynamic_slice(a, index, o.shape) + o, index)

      return nn.structural(accumulate, acc, out), None

    acc, _ = lax.scan(step, acc, xs)
  return [nn.structural(lambda a, r=r: a[r], acc)
          for r in range(n_in - offset, n_in + n_nodes - offset)]


def take_column(x, index):
  """x[:, index] for plain or probed x."""
  return nn.structural(lambda v: v[:, index], x)
