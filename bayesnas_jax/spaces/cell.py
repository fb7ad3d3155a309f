"""A cell as data: a DAG of nodes whose edges carry candidate ops (SPEC §1).

Nodes 0 … num_inputs−1 are the cell inputs, then `num_nodes` intermediate nodes.
Edge j→k computes Σ_o w_jk^o · o(w_jk^0 · z_j) (eq. 1 with the origin scalar of
§4.2); node k sums its incoming edges. Edges are numbered as in DARTS: for each
intermediate node k in order, its inputs j = 0 … k−1.

For speed and compile time, edges run folded along channels with stacked
per-edge weights (see `ops`), and a cell compiles one or two op blocks whatever
its size: a `lax.scan` body over source nodes, plus, when the inputs are not
scanned, one block for the out-edges of the cell inputs (see
`apply_cell_edges`). Weights are initialised and read per source node,
`weights["from_j"][op]` stacked over j's out-edges (the canonical layout);
`pack_cell_edges` lays them out as the scan reads them: the out-edges of the
unscanned inputs joined per op, and one row per scan step holding that step's
weights raveled, with zero weights in its padded edge slots. Unravelling a row
inside the scan body is a few slices, where stacking and padding per call
would cost XLA a copy kernel per weight leaf and one more in the backward pass.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bayesnas_jax import nn
from bayesnas_jax.spaces.ops import OPS, init_edges


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


def masked_arch(arch, masks):
  """Architecture scalars with pruned ones switched off (masks: plain 0/1)."""
  if masks is None:
    return arch
  return jax.tree_util.tree_map(
      lambda a, m: nn.scale(a, m.astype(nn.value_of(a).dtype)), arch, masks,
      is_leaf=nn.is_probed)


def source_stride(spec: CellSpec, source: int, reduction: bool) -> int:
  return 2 if reduction and source < spec.num_inputs else 1


def init_cell_edges(rng, spec: CellSpec, channels: int, reduction: bool, dtype):
  """Weights of every candidate op on every edge, stacked per source node,
  drawn from the NumPy generator `rng` (see `ops.numpy_rng`)."""
  weights = {}
  for source in spec.sources:
    stride = source_stride(spec, source, reduction)
    edges = len(spec.out_edges(source))
    weights[f"from_{source}"] = {name: init_edges(rng, OPS[name].shapes(channels, stride),
                                                  edges, dtype) for name in spec.ops}
  return weights


def repeat_per_channel(scalars, channels):
  """[E] → [E·C], each edge's scalar repeated over its channel block."""
  return nn.structural(lambda v: jnp.repeat(v, channels, axis=-1), scalars)


def ravel_rows(trees):
  """Trees of equal structure → one [len(trees), P] array, row t the leaves
  of tree t raveled (in `jax.tree_util` order)."""
  def ravel(tree):
    leaves = jax.tree_util.tree_leaves(tree, is_leaf=nn.is_probed)
    return nn.structural(lambda *v: jnp.concatenate([jnp.ravel(u) for u in v]), *leaves)
  return nn.structural(lambda *rows: jnp.stack(rows), *[ravel(t) for t in trees])


def unravel_rows(rows, template):
  """Inverse of `ravel_rows` along the last axis: rows [..., P] → the tree of
  `template` (a `jax.ShapeDtypeStruct` tree) with leaves [..., *shape]."""
  treedef = jax.tree_util.tree_structure(template)
  shapes = [leaf.shape for leaf in jax.tree_util.tree_leaves(template)]

  def split(v):
    lead, out, start = v.shape[:-1], [], 0
    for shape in shapes:
      size = math.prod(shape)
      out.append(v[..., start:start + size].reshape(lead + tuple(shape)))
      start += size
    if start != v.shape[-1]:
      raise ValueError(f"weights: a packed row has {v.shape[-1]} entries, the layout "
                       f"expects {start}")
    return out

  if not nn.is_probed(rows):
    return jax.tree_util.tree_unflatten(treedef, split(rows))
  leaves = [nn.Probed(v, p, rows.mode) for v, p in zip(split(rows.value), split(rows.probe))]
  return jax.tree_util.tree_unflatten(treedef, leaves)


def crop_to(tree, template):
  """Each leaf cut down to its template's shape (drops zero padding at the end
  of any axis)."""
  return jax.tree_util.tree_map(
      lambda v, t: nn.structural(lambda u: u[tuple(slice(0, d) for d in t.shape)], v),
      tree, template, is_leaf=nn.is_probed)


def edge_layout(spec: CellSpec, reduction: bool, config):
  """(block, scanned, slots): the sources whose out-edges run as one block
  before the scan, the sources the scan visits, and its edge slots per step.

  With `config.scan_inputs` in a normal cell the inputs join the scan
  (num_nodes slots); otherwise (always in reduction cells, whose input edges
  have stride 2) they form the block and the scan covers the intermediate
  sources with num_nodes − 1 slots."""
  n_in, n_nodes = spec.num_inputs, spec.num_nodes
  scan_inputs = bool(config.get("scan_inputs", False)) and not reduction
  first = 0 if scan_inputs else n_in
  slots = n_nodes if scan_inputs else n_nodes - 1
  scanned = list(range(first, n_in + n_nodes - 1)) if slots else []
  return list(range(first)), scanned, slots


@functools.lru_cache(maxsize=64)
def step_template(ops, slots, channels, dtype_name):
  """Shapes of one scan step's weights: per op, stacked over `slots` stride-1 edges."""
  return {name: {leaf: jax.ShapeDtypeStruct((slots,) + tuple(shape), jnp.dtype(dtype_name))
                 for leaf, (shape, _) in OPS[name].shapes(channels, 1).items()}
          for name in ops}


def _pad_edges(tree, slots):
  return jax.tree_util.tree_map(
      lambda x: nn.structural(
          lambda v: jnp.pad(v, [(0, slots - v.shape[0])] + [(0, 0)] * (v.ndim - 1)), x),
      tree, is_leaf=nn.is_probed)


def pack_cell_edges(weights, spec: CellSpec, reduction: bool, config):
  """Canonical per-source weights → the layout `apply_cell_edges` reads:
  {"block": per op, the block sources' out-edges joined} and/or {"scan":
  [steps, P], one raveled row per scanned source, padded edge slots zero}."""
  block, scanned, slots = edge_layout(spec, reduction, config)
  packed = {}
  if block:
    packed["block"] = jax.tree_util.tree_map(
        lambda *leaves: nn.structural(lambda *v: jnp.concatenate(v, 0), *leaves),
        *[weights[f"from_{s}"] for s in block], is_leaf=nn.is_probed)
  if scanned:
    packed["scan"] = ravel_rows([_pad_edges(weights[f"from_{s}"], slots) for s in scanned])
  return packed


def unpack_cell_edges(packed, spec: CellSpec, reduction: bool, config, channels: int):
  """Inverse of `pack_cell_edges` (padded slots dropped)."""
  block, scanned, slots = edge_layout(spec, reduction, config)
  weights = {}
  start = 0
  for s in block:
    count = len(spec.out_edges(s))
    weights[f"from_{s}"] = jax.tree_util.tree_map(
        lambda x, a=start, b=start + count: nn.structural(lambda v: v[a:b], x),
        packed["block"], is_leaf=nn.is_probed)
    start += count
  if scanned:
    dtype = nn.value_of(packed["scan"]).dtype
    rows = unravel_rows(packed["scan"], step_template(spec.ops, slots, channels, dtype.name))
    for t, s in enumerate(scanned):
      count = len(spec.out_edges(s))
      weights[f"from_{s}"] = jax.tree_util.tree_map(
          lambda x, t=t, count=count: nn.structural(lambda v: v[t, :count], x), rows,
          is_leaf=nn.is_probed)
  return weights


def _apply_op(name, weights, x, stride, config):
  """`OPS[name].apply`; under `config.remat` an op with weights recomputes its
  activations in the backward pass instead of keeping them."""
  def f(weights, x):
    return OPS[name].apply(weights, x, stride, config)
  if config.get("remat", False) and jax.tree_util.tree_leaves(weights):
    f = jax.checkpoint(f)
  return f(weights, x)


ORIGINS = ("input", "output")


def origin_after(config):
  """True when `config.origin` (a space config) puts the origin scalar on the
  edge's output, edge_out = w⁰ · Σ_o w^o · o(z) (SPEC §7), rather than on its
  input, Σ_o w^o · o(w⁰ · z) (SPEC §1; the default "input")."""
  origin = config.get("origin", "input") if config is not None else "input"
  if origin not in ORIGINS:
    raise ValueError(f"config.space.origin: expected one of {ORIGINS}, got {origin!r}")
  return origin == "output"


def _edge_block(weights, x, origin, op_scalars, spec: CellSpec, stride, config):
  """Σ_o w^o_e · o(w⁰_e · x_e) for E edges folded along channels.

  x: [N, H, W, E·C] (edge e's input in channel block e); origin [E];
  op_scalars [E, O]; weights: per op, stacked over the E edges."""
  edges = nn.value_of(origin).shape[0]
  channels = nn.value_of(x).shape[-1] // edges
  after = origin_after(config)
  if not after:
    x = nn.scale(x, repeat_per_channel(origin, channels))
  outs = [nn.scale(_apply_op(name, weights[name], x, stride, config),
                   repeat_per_channel(take_column(op_scalars, i), channels))
          for i, name in enumerate(spec.ops)]
  out = nn.add(*outs)
  if after:
    out_channels = nn.value_of(out).shape[-1] // edges
    out = nn.scale(out, repeat_per_channel(origin, out_channels))
  return out


def tile_channels(x, times):
  return nn.structural(lambda v: jnp.tile(v, (1,) * (v.ndim - 1) + (times,)), x)


def apply_cell_edges(packed, origin, op_scalars, inputs, spec: CellSpec, reduction: bool,
                     config):
  """Runs the cell DAG. `packed` holds the cell's edge weights as laid out by
  `pack_cell_edges`; origin [E] and op_scalars [E, O] are this cell's
  (already masked) architecture scalars; returns the intermediate nodes.

  A `lax.scan` visits source nodes in order; each step runs that node's
  out-edges folded along channels in a fixed number of edge slots (padding
  gets zero weights and scalars and lands in discarded rows), and node sums
  accumulate in a carry of node rows. The out-edges of sources not scanned
  (see `edge_layout`) run first as one block: two op blocks to compile per
  cell. With `scan_inputs` on in a normal cell the inputs join the scan: one
  block to compile, at the cost of computing padded slots (20 slots for 14
  edges in the DARTS cell)."""
  n_in, n_nodes = spec.num_inputs, spec.num_nodes
  stride = 2 if reduction else 1
  block, sources, slots = edge_layout(spec, reduction, config)
  first = len(block)  # first scanned source
  channels = nn.value_of(inputs[0]).shape[-1]
  # Row r of the carry holds node r + offset; offset = 0 keeps the inputs in
  # rows 0 … n_in − 1 when they are scanned.
  offset = 0 if first == 0 else n_in
  starts = [max(s + 1, n_in) - offset for s in sources]
  rows = max([n_in + n_nodes - offset] + [start + slots for start in starts])
  if first == 0:
    acc = nn.structural(
        lambda *v: jnp.concatenate([jnp.stack(v), jnp.zeros((rows - n_in,) + v[0].shape,
                                                             v[0].dtype)]), *inputs)
    acc = nn.as_probed(acc, nn.mode_of(*jax.tree_util.tree_leaves(
        (packed, origin, op_scalars), is_leaf=nn.is_probed)))
  else:
    # All out-edges of the block sources (each cell input feeds every node).
    in_edges = [e for s in block for e in spec.out_edges(s)]
    wide = nn.concat([tile_channels(x, n_nodes) for x in inputs])
    out = _edge_block(packed["block"], wide, take(origin, in_edges),
                      take(op_scalars, in_edges), spec, stride, config)

    def first_rows(v):
      n, h, w, _ = v.shape
      v = v.reshape(n, h, w, n_in, n_nodes, -1).sum(3)
      v = jnp.moveaxis(v, 3, 0)
      return jnp.pad(v, [(0, rows - n_nodes)] + [(0, 0)] * 4)

    acc = nn.structural(first_rows, out)
  if sources:
    padded = np.full((len(sources), slots), spec.num_edges)  # index of a zero scalar
    for t, s in enumerate(sources):
      padded[t, :len(spec.out_edges(s))] = spec.out_edges(s)
    with_zero = lambda a: nn.structural(
        lambda v: jnp.concatenate([v, jnp.zeros((1,) + v.shape[1:], v.dtype)]), a)
    template = step_template(spec.ops, slots, channels,
                             nn.value_of(packed["scan"]).dtype.name)
    xs = (jnp.asarray(sources) - offset, jnp.asarray(starts), packed["scan"],
          take(with_zero(origin), padded), take(with_zero(op_scalars), padded))

    def step(acc, xs):
      row, start, step_weights, step_origin, step_ops = xs
      x = nn.structural(lambda a: lax.dynamic_index_in_dim(a, row, keepdims=False), acc)
      out = _edge_block(unravel_rows(step_weights, template), tile_channels(x, slots),
                        step_origin, step_ops, spec, 1, config)

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
