"""Proxyless path search: TreeCell-A inside PyramidNet, every cell with its own
scalars (paper §6.2; CNN thesis §5-2; SPEC §4).

**The tree cell** (Cai et al., "Path-Level Network Transformation for Efficient
Architecture Search", ICML 2018, and its public code). A node allocates its
input to its branches by *replication* (each branch gets all of it) or *split*
(contiguous channel halves) and merges them by *add* (averaged over the
branches) or *concat*; each branch is an edge with one op, followed by a child
node or nothing (a leaf). TreeCell-A, written as data in `TREE_CELL_A`:

    root (replicate, add)
    ├─ 3×3 conv, 2 groups ─ (replicate, add)
    │   ├─ 1×1 conv ─ (split, concat): 3×3 avg pool [P1] | 7×7 depthwise-separable [P2]
    │   └─ 3×3 max pool ─ (replicate, add): 3×3 sep [P3] | 5×5 sep [P4]
    └─ 3×3 conv, 2 groups ─ (replicate, add)
        ├─ 5×5 sep ─ (replicate, add): 5×5 sep [P5] | 3×3 avg pool [P6] | 3×3 avg pool [P7]
        └─ 3×3 sep ─ (replicate, add): 3×3 avg pool [P8] | 3×3 sep [P9]

Convolution edges are pre-activation (BN → ReLU → conv, no bias); a separable
edge is one BN-ReLU, a depthwise k×k and a pointwise 1×1; pooling edges are
bare; only the two root convolutions carry the block's stride. A *path* runs
from the input through a root edge and a middle edge to one leaf, so a leaf
names its path: 9 paths, 15 edges. Choices we made where the sources leave
room (docs/tree_cells.md): Cai's released model adds a bypass around each root subtree
(`bn_before_add`), which is not one of the 9 paths — left out; batch norm has no
affine parameters in search (as the other spaces); the divisor of an add-merge
counts every branch in the search network and the kept ones in the rebuilt one.

**Scalars**: per cell and per path, the origin scalar w⁰_p and one op scalar
w_p multiply the path's leaf output (`arch["tree"] = {"origin": [n, 9], "ops":
[n, 9, 1]}` for the n = 3N cells, grouping "none": no sharing). A scalar on a
path's input would be cancelled by the batch norm that starts every conv edge,
and the root and middle edges are shared by several paths, so the leaf output is
the one place that belongs to one path alone. For the HARD update each path is
an edge from its own input node j = 0…8 into node 9 (`cell_spec`), so γ_p is
h(s⁰_p, s_p) and pruning a path removes exactly its leaf op.

**PyramidNet** (Han et al., "Deep Pyramidal Residual Networks", CVPR 2017), as
in Cai's code: 3×3 stem conv to 16 channels and BN; 3 stages of N bottleneck
blocks whose width grows additively, c_k = round(16 + k·α/(3N)) made even;
block = BN → 1×1 conv (f_in → c) → tree cell (c, stride) → BN → ReLU → 1×1
conv (c → 4c) → BN, plus a shortcut (2×2 average pooling at stride 2 in the
first block of stages 2 and 3) zero-padded from f_in to 4c channels; BN →
ReLU → global pooling → linear. A block whose every path is pruned keeps only
its shortcut.

**The rebuilt network** (`architecture` = kept path ids per cell): an edge
stays when a kept path runs through it; a split node keeps its full width and
puts a kept half back at its channels (zeros for a pruned half), and the edge
feeding it produces only the kept halves' channels.
"""
from __future__ import annotations

import json
import math
import os
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from bayesnas_jax import files, nn, plots
from bayesnas_jax.spaces.base import SearchSpace
from bayesnas_jax.spaces.cell import CellSpec, masked_arch, take
from bayesnas_jax.spaces.ops import init_classifier, numpy_rng

KIND = "tree"
NUM_PATHS = 9
OPS = ("group_conv_3x3", "conv_1x1", "dw_conv_3x3", "dw_conv_5x5", "dw_conv_7x7",
       "avg_pool_3x3", "max_pool_3x3")

# node = (allocation, merge, branches); branch = (edge op, child node or None).
TREE_CELL_A = ("replicate", "add", (
    ("group_conv_3x3", ("replicate", "add", (
        ("conv_1x1", ("split", "concat", (("avg_pool_3x3", None), ("dw_conv_7x7", None)))),
        ("max_pool_3x3", ("replicate", "add", (("dw_conv_3x3", None),
                                               ("dw_conv_5x5", None)))),
    ))),
    ("group_conv_3x3", ("replicate", "add", (
        ("dw_conv_5x5", ("replicate", "add", (("dw_conv_5x5", None), ("avg_pool_3x3", None),
                                              ("avg_pool_3x3", None)))),
        ("dw_conv_3x3", ("replicate", "add", (("avg_pool_3x3", None),
                                              ("dw_conv_3x3", None)))),
    ))),
))


class Edge(NamedTuple):
  index: int         # depth-first order
  op: str
  depth: int         # 0 for root edges
  paths: tuple       # the path ids (1-based, leaf order) that run through it
  start: float       # the part of the cell width it works on, as fractions
  stop: float
  child: "Node | None"


class Node(NamedTuple):
  alloc: str         # replicate | split
  merge: str         # add | concat
  branches: tuple    # Edges
  start: float
  stop: float


def build(tree=TREE_CELL_A) -> Node:
  """The tree as `Node`s and `Edge`s, numbered depth-first."""
  counter, leaves = [0], [0]

  def node(spec, depth, start, stop):
    alloc, merge, branches = spec
    out = []
    for b, (op, child) in enumerate(branches):
      lo, hi = start, stop
      if alloc == "split":
        step = (stop - start) / len(branches)
        lo, hi = start + b * step, start + (b + 1) * step
      index = counter[0]
      counter[0] += 1
      if child is None:
        leaves[0] += 1
        sub, paths = None, (leaves[0],)
      else:
        sub = node(child, depth + 1, lo, hi)
        paths = tuple(p for e in sub.branches for p in e.paths)
      out.append(Edge(index, op, depth, paths, lo, hi, sub))
    return Node(alloc, merge, tuple(out), start, stop)

  return node(tree, 0, 0.0, 1.0)


def edges(tree=TREE_CELL_A):
  """Every `Edge` in depth-first order."""
  out = []

  def visit(node):
    for e in node.branches:
      out.append(e)
      if e.child is not None:
        visit(e.child)

  visit(build(tree))
  return sorted(out, key=lambda e: e.index)


def kept_edges(kept, tree=TREE_CELL_A):
  """Indices of the edges a kept path runs through."""
  kept = set(kept)
  return [e.index for e in edges(tree) if kept & set(e.paths)]


def _width(lo, hi, c):
  return int(round((hi - lo) * c))


def edge_channels(e: Edge, c: int, kept):
  """(input, output) channels of edge e in a cell of width c with `kept` paths:
  the edge into a split node produces only its kept children's channels."""
  width = _width(e.start, e.stop, c)
  out = width
  if e.child is not None and e.child.alloc == "split":
    out = sum(_width(f.start, f.stop, c) for f in e.child.branches if set(kept) & set(f.paths))
  return width, out


def cell_spec() -> CellSpec:
  """Each path as an edge j → 9 from its own input node j (HARD's graph)."""
  return CellSpec(("path",), num_nodes=1, num_inputs=NUM_PATHS)


def widths(blocks_per_stage: int, alpha: float, groups: int = 2):
  """The bottleneck width c of every block (additive widening, even for 2 groups)."""
  out, planes = [], 16.0
  step = alpha / (3 * blocks_per_stage)
  for _ in range(3 * blocks_per_stage):
    planes += step
    c = int(round(planes))
    out.append(c - c % groups)
  return out


def _need(condition, field, expected, value):
  if not condition:
    raise ValueError(f"config.space.{field}: expected {expected}, got {value!r}")


def validate(space):
  n = space.blocks_per_stage
  _need(isinstance(n, int) and not isinstance(n, bool) and n > 0, "blocks_per_stage",
        "a positive integer", n)
  _need(space.alpha > 0, "alpha", "a positive number", space.alpha)
  _need(isinstance(space.num_classes, int) and space.num_classes > 1, "num_classes",
        "an integer > 1", space.num_classes)
  _need(min(widths(n, space.alpha)) >= 2, "alpha", "a widening that keeps every width ≥ 2",
        space.alpha)


def _blocks(config):
  """(stage, block, f_in, c, stride) of every block."""
  out, f_in = [], 16
  for k, c in enumerate(widths(config.blocks_per_stage, config.alpha)):
    stage, block = divmod(k, config.blocks_per_stage)
    out.append((stage + 1, block + 1, f_in, c, 2 if (stage > 0 and block == 0) else 1))
    f_in = 4 * c
  return out


# --- Weights --------------------------------------------------------------

def _he(rng, shape, fan, dtype):
  return jnp.asarray(rng.standard_normal(shape) * math.sqrt(2.0 / fan), dtype)


def init_cell(rng, c, kept=tuple(range(1, NUM_PATHS + 1)), dtype=jnp.float32,
              tree=TREE_CELL_A):
  """He-normal weights of the kept edges of one cell of width c: {"e<i>": …}."""
  weights = {}
  keep = set(kept_edges(kept, tree))
  for e in edges(tree):
    if e.index not in keep:
      continue
    w_in, w_out = edge_channels(e, c, kept)
    if e.op == "group_conv_3x3":
      weights[f"e{e.index}"] = {"w": _he(rng, (3, 3, w_in // 2, w_out), 9 * w_out // 2, dtype)}
    elif e.op == "conv_1x1":
      weights[f"e{e.index}"] = {"w": _he(rng, (w_in, w_out), w_out, dtype)}
    elif e.op.startswith("dw_conv_"):
      k = int(e.op[-1])
      weights[f"e{e.index}"] = {"dw": _he(rng, (k, k, 1, w_in), k * k, dtype),
                                "pw": _he(rng, (w_in, w_out), w_out, dtype)}
  return weights


def init_weights(key, config, kept=None, in_channels=3, dtype=jnp.float32):
  """{"stem", "blocks": [per block {"in", "cell", "out"}], "classifier"}; `kept`
  (one tuple of path ids per block) builds the rebuilt network, None the supernet."""
  rng = numpy_rng(key)
  weights = {"stem": _he(rng, (3, 3, in_channels, 16), 9 * 16, dtype), "blocks": []}
  for k, (_, _, f_in, c, _) in enumerate(_blocks(config)):
    paths = tuple(range(1, NUM_PATHS + 1)) if kept is None else tuple(kept[k])
    if not paths:
      weights["blocks"].append({})
      continue
    weights["blocks"].append({"in": _he(rng, (f_in, c), c, dtype),
                              "cell": init_cell(rng, c, paths, dtype),
                              "out": _he(rng, (c, 4 * c), 4 * c, dtype)})
  width = 4 * _blocks(config)[-1][3]
  weights["classifier"] = init_classifier(rng, width, config.num_classes, dtype)
  return weights


def init_arch(config, dtype=jnp.float32):
  """Per cell, all 1 (Algorithm 1)."""
  n = 3 * config.blocks_per_stage
  return {KIND: {"origin": jnp.ones((n, NUM_PATHS), dtype),
                 "ops": jnp.ones((n, NUM_PATHS, 1), dtype)}}


# --- Forward --------------------------------------------------------------

def _channels(x, start, stop):
  return nn.structural(lambda v: v[..., start:stop], x)


def _place(x, start, width):
  """x's channels at [start, start + C) of a `width`-channel map, zeros elsewhere."""
  def f(v):
    pad = [(0, 0)] * (v.ndim - 1) + [(start, width - start - v.shape[-1])]
    return jnp.pad(v, pad)
  return nn.structural(f, x)


def search_norm(name, x):
  """Batch norm without affine parameters, batch statistics (the search)."""
  del name
  return nn.batch_norm(x)


def _edge(op, w, x, stride, norm, name):
  if op == "avg_pool_3x3":
    return nn.avg_pool(x, 3, 1)
  if op == "max_pool_3x3":
    return nn.max_pool(x, 3, 1)
  x = nn.relu(norm(name, x))
  if op == "group_conv_3x3":
    return nn.conv2d(x, w["w"], stride=stride, groups=2)
  if op == "conv_1x1":
    return nn.dense(x, w["w"])
  channels = nn.value_of(x).shape[-1]
  return nn.dense(nn.conv2d(x, w["dw"], groups=channels), w["pw"])


def apply_cell(weights, x, path_scale, stride, kept=None, tree=TREE_CELL_A,
               norm=search_norm, prefix=""):
  """The tree cell on x [B, H, W, c]. `path_scale(p, y)` scales path p's leaf
  output (the scalars); `kept` (path ids) gives the rebuilt cell, None the
  supernet (every edge; an add-merge averages over every branch). `norm(name,
  x)` is every batch norm (named `prefix + "e<i>"` per edge)."""
  c = nn.value_of(x).shape[-1]
  keep = set(range(1, NUM_PATHS + 1)) if kept is None else set(kept)

  def run(node, z):
    outs, offset = [], 0
    for e in node.branches:
      if not keep & set(e.paths):
        continue
      zi = z
      if node.alloc == "split":
        width = _width(e.start, e.stop, c)
        zi = _channels(z, offset, offset + width)
        offset += width
      y = _edge(e.op, weights.get(f"e{e.index}"), zi, stride if e.depth == 0 else 1, norm,
                f"{prefix}e{e.index}")
      y = path_scale(e.paths[0], y) if e.child is None else run(e.child, y)
      outs.append((e, y))
    if node.merge == "concat":
      full = _width(node.start, node.stop, c)
      placed = [_place(y, _width(node.start, e.start, c), full) for e, y in outs]
      return nn.add(*placed) if len(placed) > 1 else placed[0]
    total = nn.add(*[y for _, y in outs]) if len(outs) > 1 else outs[0][1]
    count = len(node.branches) if kept is None else len(outs)
    return nn.scale(total, jnp.asarray(1.0 / count, nn.value_of(total).dtype))

  return run(build(tree), x)


def _pad_channels(x, width):
  return _place(x, 0, width)


def apply(weights, arch, images, config, masks=None, kept=None, norm=search_norm):
  """Logits for NHWC float images: the supernet with scalars `arch` (masked by
  `masks`), or, with `kept` (path ids per block) and arch None, the rebuilt
  network. `norm(name, x)` is every batch norm ("stem", "b<k>/in", "b<k>/e<i>",
  "b<k>/mid", "b<k>/final", "head")."""
  blocks = _blocks(config)
  if arch is not None:
    arch = masked_arch(arch, masks)
  x = norm("stem", nn.conv2d(images, weights["stem"]))
  for k, (_, _, f_in, c, stride) in enumerate(blocks):
    shortcut = nn.avg_pool(x, 2, 2) if stride == 2 else x
    shortcut = _pad_channels(shortcut, 4 * c)
    block = weights["blocks"][k]
    if kept is not None and not kept[k]:
      x = shortcut
      continue
    if arch is not None:
      origin, ops = take(arch[KIND]["origin"], k), take(arch[KIND]["ops"], k)

      def path_scale(p, y, origin=origin, ops=ops):
        return nn.scale(nn.scale(y, take(origin, p - 1)), take(take(ops, p - 1), 0))
    else:
      def path_scale(p, y):
        del p
        return y
    y = nn.dense(norm(f"b{k}/in", x), block["in"])
    y = apply_cell(block["cell"], y, path_scale, stride, None if kept is None else kept[k],
                   norm=norm, prefix=f"b{k}/")
    y = nn.dense(nn.relu(norm(f"b{k}/mid", y)), block["out"])
    x = nn.add(norm(f"b{k}/final", y), shortcut)
  x = nn.relu(norm("head", x))
  return nn.dense(nn.global_avg_pool(x), weights["classifier"]["w"],
                  weights["classifier"]["b"])


# --- Architectures --------------------------------------------------------

def _block_names(config):
  return [(stage, block) for stage, block, _, _, _ in _blocks(config)]


def derive(prior_state, search_config, config):
  """Per cell, the paths whose origin and op scalars both survived pruning."""
  del search_config
  keep_origin = np.asarray(prior_state.keep[KIND]["origin"], bool).reshape(-1, NUM_PATHS)
  keep_ops = np.asarray(prior_state.keep[KIND]["ops"], bool).reshape(-1, NUM_PATHS)
  cells = []
  for k, (stage, block) in enumerate(_block_names(config)):
    alive = keep_origin[k] & keep_ops[k]
    cells.append({"stage": stage, "block": block,
                  "paths": [p + 1 for p in range(NUM_PATHS) if alive[p]]})
  return {"cells": cells}


def kept_paths(architecture):
  """One tuple of kept path ids per block, in block order."""
  return [tuple(cell["paths"]) for cell in architecture["cells"]]


def architecture_masks(architecture, arch):
  n = arch[KIND]["origin"].shape[0]
  mask = np.zeros((n, NUM_PATHS), np.float32)
  for k, paths in enumerate(kept_paths(architecture)):
    for p in paths:
      mask[k, p - 1] = 1.0
  return {KIND: {"origin": jnp.asarray(mask), "ops": jnp.asarray(mask[..., None])}}


def load_architecture(path, config):
  """genotype.json of a tree search: {"cells": [{"stage", "block", "paths"}, ...]}."""
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    cells = data["cells"]
    expected = _block_names(config)
    got = [(int(c["stage"]), int(c["block"])) for c in cells]
    if got != expected:
      raise ValueError(f"{len(got)} cells; expected one per block, {len(expected)} in order")
    for c in cells:
      paths = [int(p) for p in c["paths"]]
      if sorted(set(paths)) != paths or any(not 1 <= p <= NUM_PATHS for p in paths):
        raise ValueError(f"paths {c['paths']} of stage {c['stage']} block {c['block']}; "
                         f"expected sorted distinct ids in 1..{NUM_PATHS}")
  except (OSError, ValueError, KeyError, TypeError) as err:
    raise ValueError(f"architecture file {path}: {err}") from None
  return {"cells": [{"stage": int(c["stage"]), "block": int(c["block"]),
                     "paths": [int(p) for p in c["paths"]]} for c in cells]}


def random_architecture(rng, config):
  """Each path of each cell kept with probability 1/2."""
  return {"cells": [{"stage": s, "block": b,
                     "paths": [p for p in range(1, NUM_PATHS + 1) if rng.random() < 0.5]}
                    for s, b in _block_names(config)]}


def parameter_count(architecture, config, in_channels=3):
  """Parameters of the rebuilt network, counted from the edge widths (the
  arrays of `init_weights(kept=…)` hold exactly these)."""
  kept = kept_paths(architecture)
  total = 9 * in_channels * 16
  for k, (_, _, f_in, c, _) in enumerate(_blocks(config)):
    if not kept[k]:
      continue
    total += f_in * c + c * 4 * c
    live = set(kept_edges(kept[k]))
    for e in edges():
      if e.index not in live:
        continue
      w_in, w_out = edge_channels(e, c, kept[k])
      if e.op == "group_conv_3x3":
        total += 9 * (w_in // 2) * w_out
      elif e.op == "conv_1x1":
        total += w_in * w_out
      elif e.op.startswith("dw_conv_"):
        total += int(e.op[-1]) ** 2 * w_in + w_in * w_out
  width = 4 * _blocks(config)[-1][3]
  return total + width * config.num_classes + config.num_classes


def write(workdir, architecture, prior_state, search_config, config):
  """genotype.json and one plot per stage of which paths survive."""
  del prior_state, search_config
  files.write_json(os.path.join(workdir, "genotype.json"), architecture)
  plot_dir = os.path.join(workdir, "plots")
  n = config.blocks_per_stage
  kept = kept_paths(architecture)
  for stage in range(3):
    grid = np.zeros((n, NUM_PATHS))
    for b in range(n):
      for p in kept[stage * n + b]:
        grid[b, p - 1] = 1
    fig = plots.figure((4, 0.3 * n + 1.2))
    ax = fig.subplots()
    ax.imshow(grid, cmap="Greens", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(NUM_PATHS), [f"P{p}" for p in range(1, NUM_PATHS + 1)])
    ax.set_yticks(range(n), [str(b + 1) for b in range(n)])
    ax.set_ylabel("block")
    ax.set_title(f"stage {stage + 1}: kept paths")
    fig.tight_layout()
    plots.save_png(fig, os.path.join(plot_dir, f"stage{stage + 1}_paths.png"), dpi=100)
  empty = sum(1 for paths in kept if not paths)
  return {"kept_paths": sum(len(paths) for paths in kept), "empty_cells": empty,
          "derived_params": parameter_count(architecture, config)}


def make(space_config) -> SearchSpace:
  """The tree-cell PyramidNet space (`configs/tree_pyramidnet_cifar10_search.py`)."""
  validate(space_config)
  return SearchSpace(
      name="tree_pyramid",
      cells={KIND: cell_spec()},
      init_weights=lambda key, image_shape: init_weights(key, space_config,
                                                         in_channels=image_shape[-1]),
      init_arch=lambda: init_arch(space_config),
      apply=lambda weights, arch, images, masks=None: apply(weights, arch, images,
                                                            space_config, masks),
      derive=lambda prior_state, search: derive(prior_state, search, space_config),
      architecture_masks=architecture_masks,
      export=lambda workdir, architecture, prior_state, search: write(
          workdir, architecture, prior_state, search, space_config),
      load_architecture=lambda path: load_architecture(path, space_config),
      random_architecture=lambda rng: random_architecture(rng, space_config),
      parameter_count=lambda architecture: parameter_count(architecture, space_config))
