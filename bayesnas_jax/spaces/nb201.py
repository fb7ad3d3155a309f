"""The NAS-Bench-201 space (Dong & Yang, ICLR 2020) as a `SearchSpace` (SPEC §7).

Cell: nodes 0 (the cell input) … 3 (its output), an edge j→k for every j < k
(6 edges, in the order 0→1, 0→2, 1→2, 0→3, 1→3, 2→3), candidate ops
`skip_connect`, `nor_conv_1x1`, `nor_conv_3x3` (ReLU → conv without bias → BN)
and `avg_pool_3x3` (stride 1, padding not counted). Edge j→k computes
Σ_o w^o · o(w⁰ · z_j) (eq. 1 with the origin scalar of §4.2); node k is the sum
of its edges. NB201's `none` op is what a pruned origin scalar means here.

Macro network: 3×3 stem conv to C with BN; three stages of N cells at C, 2C,
4C; between stages NB201's residual reduction block (ReLU-conv3×3 stride 2-BN,
ReLU-conv3×3-BN, plus a shortcut of 2×2 average pooling then a 1×1 conv); BN,
ReLU, global average pooling, linear. In search, batch norm has no affine
parameters and uses batch statistics. All cells share one set of scalars,
`arch["cell"] = {"origin": [1, 6], "ops": [1, 6, O]}` (one cell genotype), and
the N cells of a stage run as one `lax.scan`: three cell bodies to compile.

An architecture is `{"cell": [[op, from, to], ...]}` with one entry per edge in
the order above, op "none" for a pruned edge; `arch_string` writes it as the
standard `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` that NAS-Bench-201 and
NATS-Bench tables are keyed by, and `parse_arch_string` reads it back.
"""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import files, nn, plots
from bayesnas_jax.spaces.base import SearchSpace, group_keep, group_values
from bayesnas_jax.spaces import cell as cell_lib
from bayesnas_jax.spaces.cell import CellSpec, masked_arch, take
from bayesnas_jax.spaces.ops import init_classifier, numpy_rng

NB201_OPS = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NONE = "none"
NUM_NODES = 3  # intermediate nodes 1, 2, 3 after the input node 0
KIND = "cell"


def cell_spec(config=None) -> CellSpec:
  ops = tuple(config.ops) if config is not None else NB201_OPS
  return CellSpec(ops, NUM_NODES, 1)


def _need(condition, field, expected, value):
  if not condition:
    raise ValueError(f"config.space.{field}: expected {expected}, got {value!r}")


def validate(space):
  for field in ("channels", "cells_per_stage", "num_classes"):
    value = space[field]
    _need(isinstance(value, int) and not isinstance(value, bool) and value > 0, field,
          "a positive integer", value)
  ops = list(space.ops)
  _need(ops and len(set(ops)) == len(ops) and set(ops) <= set(NB201_OPS), "ops",
        f"a non-empty list of distinct ops from {list(NB201_OPS)}", ops)
  _need(isinstance(space.get("remat", False), bool), "remat", "true or false",
        space.get("remat"))
  cell_lib.origin_after(space)


# --- Weights --------------------------------------------------------------

def _he(rng, shape, fan_in, dtype):
  return jnp.asarray(rng.standard_normal(shape) * math.sqrt(2.0 / fan_in), dtype)


def init_weights(key, config, in_channels=3, dtype=jnp.float32):
  """He-normal weights drawn on the host from a generator seeded by `key`.

  {"stem": [3, 3, in, C], "stages": 3 × {op: [N, 6, …]} (stacked over the N
  cells and the 6 edges), "reductions": 2 × {"conv_a", "conv_b", "shortcut"},
  "classifier": {"w", "b"}}."""
  spec = cell_spec(config)
  rng = numpy_rng(key)
  c, n = config.channels, config.cells_per_stage
  edges = spec.num_edges
  weights = {"stem": _he(rng, (3, 3, in_channels, c), 9 * in_channels, dtype),
             "stages": [], "reductions": []}
  for stage in range(3):
    width = c * 2 ** stage
    cells = {}
    if "nor_conv_1x1" in spec.ops:
      cells["nor_conv_1x1"] = _he(rng, (n, edges, width, width), width, dtype)
    if "nor_conv_3x3" in spec.ops:
      cells["nor_conv_3x3"] = _he(rng, (n, edges, 3, 3, width, width), 9 * width, dtype)
    weights["stages"].append(cells)
    if stage < 2:
      weights["reductions"].append({
          "conv_a": _he(rng, (3, 3, width, 2 * width), 9 * width, dtype),
          "conv_b": _he(rng, (3, 3, 2 * width, 2 * width), 18 * width, dtype),
          "shortcut": _he(rng, (width, 2 * width), width, dtype)})
  width = 4 * c
  weights["classifier"] = init_classifier(rng, width, config.num_classes, dtype)
  return weights


def init_arch(config, dtype=jnp.float32):
  """One shared set of scalars, all 1 (Algorithm 1)."""
  spec = cell_spec(config)
  return {KIND: {"origin": jnp.ones((1, spec.num_edges), dtype),
                 "ops": jnp.ones((1, spec.num_edges, len(spec.ops)), dtype)}}


# --- Forward --------------------------------------------------------------

def apply_op(name, weights, x, edge):
  """One candidate op on one edge; `weights` are the cell's {op: [6, …]}."""
  if name == "skip_connect":
    return x
  if name == "avg_pool_3x3":
    return nn.avg_pool(x, 3, 1)
  if name == "nor_conv_1x1":
    return nn.batch_norm(nn.dense(nn.relu(x), take(weights[name], edge)))
  if name == "nor_conv_3x3":
    return nn.batch_norm(nn.conv2d(nn.relu(x), take(weights[name], edge)))
  raise ValueError(f"nb201: unknown op {name!r}")


def apply_cell(weights, origin, op_scalars, x, spec: CellSpec, remat=False,
               origin_after=False):
  """The cell DAG on input x; origin [6], op_scalars [6, O] (already masked).
  Returns node 3, the cell output. `origin_after` puts w⁰ on the edge's output
  (`config.space.origin = "output"`) instead of its input."""
  def edge_out(weights, x, e, origin_e, ops_e):
    if not origin_after:
      x = nn.scale(x, origin_e)
    outs = [nn.scale(apply_op(name, weights, x, e), take(ops_e, o))
            for o, name in enumerate(spec.ops)]
    out = nn.add(*outs)
    return nn.scale(out, origin_e) if origin_after else out

  nodes = [x]
  for node in spec.intermediate:
    terms = []
    for e in spec.in_edges(node):
      f = lambda w, z, a, b, e=e: edge_out(w, z, e, a, b)
      if remat:
        f = jax.checkpoint(f)
      terms.append(f(weights, nodes[spec.edges[e][0]], take(origin, e),
                     take(op_scalars, e)))
    nodes.append(nn.add(*terms) if len(terms) > 1 else terms[0])
  return nodes[-1]


def reduction_block(weights, x):
  """NB201's ResNet basic block with stride 2 (the stage transition)."""
  y = nn.batch_norm(nn.conv2d(nn.relu(x), weights["conv_a"], stride=2))
  y = nn.batch_norm(nn.conv2d(nn.relu(y), weights["conv_b"]))
  shortcut = nn.dense(nn.avg_pool(x, 2, 2), weights["shortcut"])
  return nn.add(y, shortcut)


def apply(weights, arch, images, config, masks=None):
  """Logits of the search network for NHWC float images."""
  spec = cell_spec(config)
  arch = masked_arch(arch, masks)
  origin, op_scalars = take(arch[KIND]["origin"], 0), take(arch[KIND]["ops"], 0)
  remat = bool(config.get("remat", False))
  after = cell_lib.origin_after(config)
  mode = nn.mode_of(*jax.tree_util.tree_leaves((weights, arch), is_leaf=nn.is_probed))
  x = nn.batch_norm(nn.conv2d(images, weights["stem"]))
  for stage, cells in enumerate(weights["stages"]):
    if stage:
      x = reduction_block(weights["reductions"][stage - 1], x)
    # The carry is probed whenever anything is (one carry type for the scan).
    x = nn.as_probed(x, mode)

    def step(x, cell_weights):
      return apply_cell(cell_weights, origin, op_scalars, x, spec, remat, after), None

    if cells:
      x, _ = jax.lax.scan(step, x, cells)
    else:  # only parameter-free ops: nothing to scan over
      for _ in range(config.cells_per_stage):
        x, _ = step(x, {})
  x = nn.relu(nn.batch_norm(x))
  return nn.dense(nn.global_avg_pool(x), weights["classifier"]["w"],
                  weights["classifier"]["b"])


# --- Architectures --------------------------------------------------------

def arch_string(architecture) -> str:
  """`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`: node j's group lists its edges
  from nodes 0 … j−1."""
  ops = {(int(j), int(k)): op for op, j, k in architecture[KIND]}
  groups = []
  for k in range(1, NUM_NODES + 1):
    groups.append("|" + "|".join(f"{ops[(j, k)]}~{j}" for j in range(k)) + "|")
  return "+".join(groups)


def parse_arch_string(text, ops=NB201_OPS):
  """The architecture of an NB201 string (one-line ValueError if malformed)."""
  text = text.strip()
  groups = text.split("+")
  allowed = (NONE,) + tuple(ops)
  expected = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2| with ops from " + str(list(allowed))
  if len(groups) != NUM_NODES:
    raise ValueError(f"NB201 string {text!r}: expected {expected}")
  edges = []
  for k, group in enumerate(groups, start=1):
    if not (group.startswith("|") and group.endswith("|")):
      raise ValueError(f"NB201 string {text!r}: expected {expected}")
    items = group[1:-1].split("|")
    if len(items) != k:
      raise ValueError(f"NB201 string {text!r}: node {k} needs {k} inputs; expected {expected}")
    for j, item in enumerate(items):
      op, _, source = item.partition("~")
      if op not in allowed or source != str(j):
        raise ValueError(f"NB201 string {text!r}: bad entry {item!r}; expected {expected}")
      edges.append([op, j, k])
  return {KIND: edges}


def load_architecture(path, ops=NB201_OPS):
  """genotype.json of an NB201 search, or a file holding an NB201 string."""
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except OSError as err:
    raise ValueError(f"architecture file {path}: {err.strerror}") from None
  if not text.lstrip().startswith("{"):
    try:
      return parse_arch_string(text, ops)
    except ValueError as err:
      raise ValueError(f"architecture file {path}: {err}") from None
  import json  # pylint: disable=import-outside-toplevel
  try:
    data = json.loads(text)
    edges = data[KIND]
    slots = sorted((int(j), int(k)) for _, j, k in edges)
    if slots != sorted(cell_spec().edges):
      raise ValueError(f"edges {slots}, each of the 6 edges exactly once")
    return parse_arch_string(arch_string({KIND: edges}), ops)
  except (ValueError, KeyError, TypeError) as err:
    raise ValueError(f"architecture file {path}: expected {{\"cell\": [[op, from, to], "
                     f"...]}} with one entry per edge of the NB201 cell "
                     f"({type(err).__name__}: {err})") from None


def decisions(prior_state, search_config, spec: CellSpec):
  """Per edge, what the search decided and how surely (SPEC §8).

  An edge whose prune rule left it no op is `none`, one left exactly one op
  keeps it: both are decided by the prior. An edge left with several ops takes
  the one of largest rank score (`search.rank_by`; ties to the first op in
  `spec.ops`): decided by rank. `margin` is the chosen op's score minus the
  runner-up's among the ops alive when the last round began, in standard errors
  of the difference (the curvature's batch-to-batch noise); with no runner-up
  alive, the alternative is `none`, whose score is the evidence rule's λ_w
  (saliency ranking only). None where no noise was measured."""
  grouping = search_config.grouping
  shape = (spec.num_edges, len(spec.ops))
  def values(name, default):
    tree = getattr(prior_state, name)
    if tree is None:
      return default
    return np.reshape(group_values(tree[KIND]["ops"], grouping), shape).astype(np.float64)
  score = np.reshape(group_values(prior_state.rank[KIND]["ops"], grouping),
                     shape).astype(np.float64)
  se = values("score_se", np.zeros(shape))
  keep = np.reshape(group_keep(prior_state.keep[KIND]["ops"], grouping), shape)
  keep_origin = np.reshape(group_keep(prior_state.keep[KIND]["origin"], grouping),
                           (spec.num_edges,))
  alive_before = prior_state.alive_before
  if alive_before is not None:
    before = np.reshape(group_keep(alive_before[KIND]["ops"], grouping), shape)
    before = before & np.reshape(group_keep(alive_before[KIND]["origin"], grouping),
                                 (spec.num_edges, 1))
  else:
    before = np.ones(shape, bool)
  none_score = (float(search_config.lambda_w)
                if getattr(search_config, "rank_by", "gamma") == "saliency" else None)
  out = []
  for e, (j, k) in enumerate(spec.edges):
    alive = keep[e] & keep_origin[e]
    rank = np.where(alive, np.nan_to_num(score[e], nan=-np.inf), -np.inf)
    if alive.any():
      chosen = int(np.argmax(rank))
      op = spec.ops[chosen]
    else:
      chosen, op = None, NONE
    others = [o for o in range(len(spec.ops)) if before[e, o] and o != chosen]
    margin = None
    if chosen is not None:
      if others:
        r = max(others, key=lambda o: score[e, o])
        diff, noise = score[e, chosen] - score[e, r], math.hypot(se[e, chosen], se[e, r])
      elif none_score is not None:
        diff, noise = score[e, chosen] - none_score, se[e, chosen]
      else:
        diff, noise = None, 0.0
    elif others and none_score is not None:
      r = max(others, key=lambda o: score[e, o])
      diff, noise = none_score - score[e, r], se[e, r]
    else:
      diff, noise = None, 0.0
    if diff is not None and noise > 0:
      margin = float(diff / noise)
    out.append({"edge": f"{j}->{k}", "op": op,
                "decided_by": "prior" if alive.sum() <= 1 else "rank",
                "survivors": [spec.ops[o] for o in range(len(spec.ops)) if alive[o]],
                "margin": margin})
  return out


def derive(prior_state, search_config, spec: CellSpec):
  """Per edge: `none` if pruned (its origin, or every op), else the surviving
  op with the largest rank score (`decisions`)."""
  return {KIND: [[d["op"], j, k] for d, (j, k) in
                 zip(decisions(prior_state, search_config, spec), spec.edges)]}


def architecture_masks(architecture, arch, spec: CellSpec):
  """Masks that switch on exactly the architecture's op per edge."""
  ops = np.zeros((spec.num_edges, len(spec.ops)), np.float32)
  index = {edge: e for e, edge in enumerate(spec.edges)}
  for op, j, k in architecture[KIND]:
    if op != NONE:
      if op not in spec.ops:
        raise ValueError(f"nb201 architecture: op {op!r} on edge {j}->{k} is not one of "
                         f"the space's ops {list(spec.ops)}")
      ops[index[(int(j), int(k))], spec.ops.index(op)] = 1.0
  n = arch[KIND]["ops"].shape[0]
  return {KIND: {"ops": jnp.broadcast_to(jnp.asarray(ops), (n,) + ops.shape),
                 "origin": jnp.broadcast_to(jnp.asarray(ops.any(-1), jnp.float32),
                                            (n, spec.num_edges))}}


def random_architecture(rng, spec: CellSpec):
  """Each edge's op drawn uniformly from `none` and the space's ops (all
  5⁶ = 15,625 cells equally likely with the four NB201 ops)."""
  choices = (NONE,) + tuple(spec.ops)
  return {KIND: [[choices[int(rng.integers(len(choices)))], j, k] for j, k in spec.edges]}


def parameter_count(architecture, config, in_channels=3):
  """Parameters of the derived network at search size (BN without affine)."""
  shapes = jax.eval_shape(lambda: init_weights(0, config, in_channels))
  size = lambda tree: int(sum(np.prod(l.shape) for l in jax.tree_util.tree_leaves(tree)))
  total = size(shapes["stem"]) + size(shapes["reductions"]) + size(shapes["classifier"])
  edges = len(architecture[KIND])
  for stage in shapes["stages"]:
    for op, _, _ in architecture[KIND]:
      if op in stage:
        total += size(stage[op]) // edges
  return total


def write(workdir, architecture, prior_state, search_config, spec: CellSpec):
  """genotype.json, nb201_arch.txt and plots of the cell and its γ."""
  text = arch_string(architecture)
  decided = decisions(prior_state, search_config, spec)
  z = float(getattr(search_config, "confidence_z", 2.0))
  for d in decided:
    d["inside_noise"] = d["margin"] is not None and abs(d["margin"]) < z
  by_prior = sum(d["decided_by"] == "prior" for d in decided)
  files.write_json(os.path.join(workdir, "genotype.json"), {**architecture, "nb201": text})
  files.write_text(os.path.join(workdir, "nb201_arch.txt"), text + "\n")
  plot_dir = os.path.join(workdir, "plots")
  cell = {"edges": [e for e in architecture[KIND] if e[0] != NONE],
          "concat": [NUM_NODES]}
  shaky = [d["edge"] for d in decided if d["inside_noise"]]
  plots.plot_cell(cell, os.path.join(plot_dir, "cell"),
                  f"BayesNAS NB201 cell\n{text}\n{by_prior}/6 edges decided by the prior; "
                  f"margins (s.e.): " + ", ".join(
                      f"{d['edge']} {d['margin']:.3g}" if d["margin"] is not None
                      else f"{d['edge']} -" for d in decided)
                  + (f"; inside the noise: {', '.join(shaky)}" if shaky else ""),
                  num_inputs=1)
  plots.plot_gamma(group_values(prior_state.gamma[KIND]["ops"], search_config.grouping),
                   group_keep(prior_state.keep[KIND]["ops"], search_config.grouping), spec,
                   os.path.join(plot_dir, "cell_gamma"), "NB201 cell: prior variance γ")
  return {"nb201": text, "derived_edges": {KIND: sum(e[0] != NONE for e in architecture[KIND])},
          "decided_by_prior": by_prior, "decided_by_rank": len(decided) - by_prior,
          "decisions": decided}


def make(space_config) -> SearchSpace:
  """The NB201 space of `space_config` (`configs/nb201_cifar10_search.py`)."""
  validate(space_config)
  spec = cell_spec(space_config)
  return SearchSpace(
      name="nb201",
      cells={KIND: spec},
      init_weights=lambda key, image_shape: init_weights(key, space_config, image_shape[-1]),
      init_arch=lambda: init_arch(space_config),
      apply=lambda weights, arch, images, masks=None: apply(weights, arch, images,
                                                            space_config, masks),
      derive=lambda prior_state, search: derive(prior_state, search, spec),
      architecture_masks=lambda architecture, arch: architecture_masks(architecture, arch,
                                                                       spec),
      export=lambda workdir, architecture, prior_state, search: write(
          workdir, architecture, prior_state, search, spec),
      load_architecture=lambda path: load_architecture(path, spec.ops),
      random_architecture=lambda rng: random_architecture(rng, spec),
      parameter_count=lambda architecture: parameter_count(architecture, space_config))
