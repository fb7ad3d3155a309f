"""The recurrent cell space (RNN thesis (R) ch. 3; DARTS's RNN space) with time in
`lax.scan` and curvature through time ((R) §4, eqs. 4.13–4.21).

One step of the cell, for input x_t [B, n_in] and state h_{t−1} [B, n_hid]:

  node 0:  c, g = split([x_t, h_{t−1}] W_0),  s_0 = h_{t−1} + σ(c) ⊙ (tanh(g) − h_{t−1})
  node k:  s_k = norm( Σ_{j<k} w⁰_jk · Σ_o w^o_jk · (s_j + σ(c_j) ⊙ (o(g_j) − s_j)) ),
           c_j, g_j = split(s_j W_k)       (W_k shared by node k's in-edges, as DARTS)
  h_t = mean(s_1, …, s_N)

with ops o ∈ {tanh, relu, sigmoid, identity}, each a linear map, its activation and the
highway bypass; the origin scalar w⁰ per edge (SPEC §1) after the ops
(`origin="output"`) or on the edge's input (`"input"`), and `norm` a batch or layer
normalisation without affine parameters ("batch" | "layer" | "none"; (R) Table 5.1).
Edges are numbered as DARTS numbers them: node k's inputs j = 0 … k−1, k = 1 … N,
and `arch["rnn"] = {"origin": [1, E], "ops": [1, E, O]}` is the scalars' pytree in
the layout of every other space (`spaces.base`), so the HARD update of
`search.hard` and its dependency graph (`cell_spec`) apply unchanged.

Curvature through time: inside `value_grad_curvature` the state is a probed
tensor carried by the scan, so one backward pass runs the diagonal recursion
backwards through every step (eqs. 4.14–4.16: H of W_x summed over time, each
step's pre-activation curvature carried to the step before through W²), and the
gradient is ordinary BPTT. `horizon` = τ truncates the recursion (eq. 4.18):
the curvature is cut from the carried state every τ steps, so the loss at step t
reaches back to the start of its block of τ steps (at most τ − 1 steps). τ ≥ the
sequence length is the full recursion, τ = 1 the one-step curvature. The thesis
slides a window of τ behind every t; cutting at block boundaries keeps the pass
one ordinary backward pass (a sliding window would carry τ curvature states)
and meets the two ends exactly. Gradients are never truncated.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bayesnas_jax import files, nn, plots
from bayesnas_jax.spaces.base import SearchSpace
from bayesnas_jax.spaces.cell import CellSpec

RNN_OPS = ("tanh", "relu", "sigmoid", "identity")
ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "sigmoid": nn.sigmoid,
               "identity": nn.identity}
NORMS = ("batch", "layer", "none")
ORIGINS = ("output", "input")
ARCH_INITS = ("ones", "mean")
KIND = "rnn"


def cell_spec(num_nodes: int = 8, ops=RNN_OPS) -> CellSpec:
  """The cell as data: one input (node 0) and `num_nodes` intermediate nodes."""
  for op in ops:
    if op not in ACTIVATIONS:
      raise ValueError(f"config.space.ops: {op!r} is not a recurrent op; expected some of "
                       f"{', '.join(ACTIVATIONS)}")
  if num_nodes < 1:
    raise ValueError(f"config.space.num_nodes: expected an integer >= 1, got {num_nodes!r}")
  return CellSpec(ops=tuple(ops), num_nodes=num_nodes, num_inputs=1)


def init_cell(key, n_in: int, n_hid: int, num_nodes: int, init_range: float = 0.04):
  """W_0 [n_in + n_hid, 2 n_hid] and W_1…N stacked [N, n_hid, 2 n_hid], uniform in
  ±init_range (DARTS's INITRANGE)."""
  k0, k1 = jax.random.split(key)
  return {"W0": jax.random.uniform(k0, (n_in + n_hid, 2 * n_hid), minval=-init_range,
                                   maxval=init_range),
          "Ws": jax.random.uniform(k1, (num_nodes, n_hid, 2 * n_hid), minval=-init_range,
                                   maxval=init_range)}


def init_arch(spec: CellSpec, init: str = "ones"):
  """Every scalar 1 (Algorithm 1), or with `init="mean"` each node's mixing an
  average: node k's origins 1/k and every op 1/|ops|, so that without a
  normalisation (`norm="none"`) the node's output is a convex combination of its
  inputs' candidates and the state stays bounded at the start (with every scalar
  at 1 it grows geometrically across nodes and steps)."""
  if init not in ARCH_INITS:
    raise ValueError(f"config.space.arch_init: expected one of {ARCH_INITS}, got {init!r}")
  if init == "ones":
    origin = jnp.ones((1, spec.num_edges))
    ops = jnp.ones((1, spec.num_edges, len(spec.ops)))
  else:
    origin = jnp.concatenate([jnp.full((k,), 1.0 / k)
                              for k in range(1, spec.num_nodes + 1)])[None]
    ops = jnp.full((1, spec.num_edges, len(spec.ops)), 1.0 / len(spec.ops))
  return {KIND: {"origin": origin, "ops": ops}}


def _split(ch, n_hid):
  c = nn.structural(lambda v: v[..., :n_hid], ch)
  g = nn.structural(lambda v: v[..., n_hid:], ch)
  return c, g


def _gates(c):
  """σ(c) and 1 − σ(c), the latter as σ(−c) so that each product of the highway
  below gets its own coefficient in the curvature rule."""
  minus = nn.scale(c, jnp.asarray(-1.0, nn.value_of(c).dtype))
  return nn.sigmoid(c), nn.sigmoid(minus)


def _highway(gates, candidate, s):
  """(1 − c) ⊙ s + c ⊙ candidate, i.e. s + c ⊙ (candidate − s)."""
  keep, carry = gates
  return nn.add(nn.bilinear(jnp.multiply, carry, s), nn.bilinear(jnp.multiply, keep, candidate))


def _column(a, index):
  """a[0, index] as [len(index), 1, 1] for broadcasting over [k, B, n_hid]."""
  return nn.structural(lambda v: v[0, index][:, None, None], a)


def _normalize(x, norm):
  if norm == "batch":
    return nn.batch_norm(x)
  if norm == "layer":
    return nn.layer_norm(x)
  return x


def _drop(x, mask):
  return x if mask is None else nn.scale(x, mask)


def cell_step(weights, arch, x, h, spec: CellSpec, norm: str = "batch",
              origin: str = "output", x_mask=None, h_mask=None):
  """h_t from x_t [B, n_in] and h_{t−1} [B, n_hid] (plain or probed); `arch` is
  `arch["rnn"]` (masked scalars, if any, already applied). `x_mask` / `h_mask`
  (plain [B, n], scaled 0/(1−p)⁻¹: variational dropout, the same at every step)
  drop the cell input and the states where they enter a linear map, as DARTS
  does; the highway bypasses read the states undropped."""
  n_hid = nn.value_of(h).shape[-1]
  c, g = _split(nn.dense(nn.concat([_drop(x, x_mask), _drop(h, h_mask)], axis=-1),
                         weights["W0"]), n_hid)
  states = [_highway(_gates(c), nn.tanh(g), h)]
  edge = 0
  for k in range(1, spec.num_nodes + 1):
    index = list(range(edge, edge + k))
    edge += k
    prev = nn.structural(lambda *v: jnp.stack(v), *states)          # [k, B, n_hid]
    if origin == "input":
      prev = nn.scale(prev, _column(arch["origin"], index))
    w_k = nn.structural(lambda v, k_=k: v[k_ - 1], weights["Ws"])
    c, g = _split(nn.dense(_drop(prev, None if h_mask is None else h_mask[None]), w_k),
                  n_hid)
    gates = _gates(c)
    mixed = None
    for o, op in enumerate(spec.ops):
      term = nn.scale(_highway(gates, ACTIVATIONS[op](g), prev),
                      _column(nn.structural(lambda v, o_=o: v[..., o_], arch["ops"]), index))
      mixed = term if mixed is None else nn.add(mixed, term)
    if origin == "output":
      mixed = nn.scale(mixed, _column(arch["origin"], index))
    states.append(_normalize(nn.structural(lambda v: jnp.sum(v, axis=0), mixed), norm))
  total = nn.structural(lambda *v: sum(v), *states[1:])
  return nn.scale(total, jnp.asarray(1.0 / spec.num_nodes, nn.value_of(total).dtype))


def _cut(h, cut):
  """The curvature (probe cotangent) of `h` stopped where `cut`; values and
  gradients pass unchanged."""
  if not nn.is_probed(h):
    return h
  return nn.Probed(h.value, jnp.where(cut, lax.stop_gradient(h.probe), h.probe), h.mode)


def unroll(weights, arch, inputs, h0, spec: CellSpec, norm: str = "batch",
           origin: str = "output", horizon: int = 0, x_mask=None, h_mask=None):
  """Runs the cell over inputs [T, B, n_in] from h0 [B, n_hid]: (outputs [T, B,
  n_hid], h_T). `horizon` τ > 0 truncates the curvature recursion through time
  every τ steps (module docstring); 0 never does."""
  if norm not in NORMS:
    raise ValueError(f"config.space.norm: expected one of {NORMS}, got {norm!r}")
  if origin not in ORIGINS:
    raise ValueError(f"config.space.origin: expected one of {ORIGINS}, got {origin!r}")
  mode = nn.mode_of(weights["W0"], weights["Ws"], inputs, *jax.tree_util.tree_leaves(
      arch, is_leaf=nn.is_probed))
  h0 = nn.as_probed(h0, mode)
  steps = nn.value_of(inputs).shape[0]

  def body(h, xs):
    t, x = xs
    if horizon > 0:
      h = _cut(h, (t % horizon == 0) & (t > 0))
    h = cell_step(weights, arch, x, h, spec, norm, origin, x_mask, h_mask)
    return h, h

  h_last, outputs = lax.scan(body, h0, (jnp.arange(steps), inputs))
  return outputs, h_last


# --- The space as the registry sees it (`spaces.make`) ----------------------
#
# An architecture is a DARTS recurrent genotype: {"recurrent": [[op, from], ...],
# "concat": [1..N]}, node j's one input pair at position j − 1.

def validate(space):
  """One-line ValueError for the first bad field of `config.space`."""
  for field, low in (("num_nodes", 1), ("size", 1)):
    value = space.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      raise ValueError(f"config.space.{field}: expected an integer >= {low}, got {value!r}")
  ops = list(space.get("ops", ()))
  if not ops or len(set(ops)) != len(ops) or not set(ops) <= set(ACTIVATIONS):
    raise ValueError(f"config.space.ops: expected distinct ops from {list(ACTIVATIONS)}, "
                     f"got {ops!r}")
  for field, value, choices in (("norm", space.get("norm", "none"), NORMS),
                                ("origin", space.get("origin", "output"), ORIGINS),
                                ("arch_init", space.get("arch_init", "ones"), ARCH_INITS)):
    if value not in choices:
      raise ValueError(f"config.space.{field}: expected one of {choices}, got {value!r}")


def derive(spec: CellSpec, state, by_rank=()):
  """Per node its one surviving (edge, op) pair (decided by the prior, unless
  the node is in `by_rank`: a round pruned its last pair or pairs and
  `search.keep_last` kept one, the best by rank), else its best kept pair by the
  rank score `state.rank` (decided by rank among several survivors), else, where
  the prior pruned every pair into the node, its best pair overall (an empty
  node, decided by rank). Returns (genotype, decisions), one decision per node."""
  score = np.asarray(state.rank[KIND]["ops"], np.float64).reshape(spec.num_edges, -1)
  keep = np.asarray(state.keep[KIND]["ops"], bool).reshape(spec.num_edges, -1)
  recurrent, decisions = [], []
  for node in spec.intermediate:
    pairs = [(e, o) for e in spec.in_edges(node) for o in range(len(spec.ops))]
    kept = [(e, o) for e, o in pairs if keep[e, o]]
    pool = kept or pairs
    value = lambda p: score[p] if np.isfinite(score[p]) else -np.inf
    e, o = max(pool, key=value)
    recurrent.append([spec.ops[o], spec.edges[e][0]])
    decisions.append({"node": node, "op": spec.ops[o], "from": spec.edges[e][0],
                      "decided_by": ("prior" if len(kept) == 1 and node not in by_rank
                                     else "rank"),
                      "survivors": len(kept), "empty": not kept})
  return {"recurrent": recurrent, "concat": list(spec.intermediate)}, decisions


def genotype_literal(genotype):
  """The DARTS `Genotype(recurrent=[...], concat=range(1, N + 1))` literal."""
  pairs = ", ".join(f"('{op}', {source})" for op, source in genotype["recurrent"])
  nodes = genotype["concat"]
  return f"Genotype(recurrent=[{pairs}], concat=range({nodes[0]}, {nodes[-1] + 1}))"


def genotype_masks(spec: CellSpec, genotype):
  """Masks that switch on exactly the genotype's (edge, op) pairs and origins."""
  ops = np.zeros((1, spec.num_edges, len(spec.ops)), np.float32)
  if len(genotype["recurrent"]) != spec.num_nodes:
    raise ValueError(f"genotype: {len(genotype['recurrent'])} nodes; expected "
                     f"{spec.num_nodes} (config.space.num_nodes)")
  for node, (op, source) in zip(spec.intermediate, genotype["recurrent"]):
    if op not in spec.ops or not 0 <= int(source) < node:
      raise ValueError(f"genotype: node {node} cannot take ({op!r}, {source}); expected an "
                       f"op of {spec.ops} from a node < {node}")
    ops[0, spec.edges.index((int(source), node)), spec.ops.index(op)] = 1.0
  return {KIND: {"origin": jnp.asarray(ops.any(-1), jnp.float32), "ops": jnp.asarray(ops)}}


def load_genotype(path: str, field: str = "config.train.genotype"):
  """genotype.json of a search: {"recurrent": [[op, from], ...], "concat": [...]}."""
  try:
    with open(path, encoding="utf-8") as f:
      genotype = json.load(f)
  except (OSError, ValueError) as err:
    raise ValueError(f"{field}: cannot read {path!r} as genotype.json "
                     f"({err.__class__.__name__})") from None
  recurrent = genotype.get("recurrent") if isinstance(genotype, dict) else None
  if not recurrent or not all(isinstance(e, list) and len(e) == 2 for e in recurrent):
    raise ValueError(f"{field}: {path} has no 'recurrent' list of [op, from_node] pairs")
  return genotype


def random_genotype(rng, spec: CellSpec):
  """Each node j = 1..N one predecessor in 0..j−1 and one op, uniformly."""
  return {"recurrent": [[str(spec.ops[rng.integers(len(spec.ops))]), int(rng.integers(j))]
                        for j in spec.intermediate],
          "concat": list(spec.intermediate)}


def plot_scores(path, spec: CellSpec, state):
  """The rank score of every kept (edge, op) pair (blank: pruned)."""
  score = np.asarray(state.rank[KIND]["ops"]).reshape(spec.num_edges, -1)
  keep = np.asarray(state.keep[KIND]["ops"]).reshape(spec.num_edges, -1)
  fig = plots.figure((8, 0.25 * spec.num_edges + 1))
  ax = fig.subplots()
  image = ax.imshow(np.where(keep, score, np.nan), aspect="auto", cmap="viridis")
  ax.set_yticks(range(spec.num_edges), [f"{j}→{k}" for j, k in spec.edges], fontsize=6)
  ax.set_xticks(range(len(spec.ops)), spec.ops)
  ax.set_title("rank score of kept (edge, op) pairs (blank: pruned)")
  fig.colorbar(image)
  fig.tight_layout()
  plots.save_png(fig, path, dpi=100)


def write(workdir, genotype, state, spec: CellSpec, by_rank=()):
  """genotype.json, genotype.txt (the DARTS literal) and scalars.png; returns
  the summary fields of the decisions."""
  _, decisions = derive(spec, state, by_rank)
  files.write_json(os.path.join(workdir, "genotype.json"), genotype)
  files.write_text(os.path.join(workdir, "genotype.txt"), genotype_literal(genotype) + "\n")
  plot_scores(os.path.join(workdir, "scalars.png"), spec, state)
  by_prior = sum(d["decided_by"] == "prior" for d in decisions)
  return {"genotype_literal": genotype_literal(genotype), "decided_by_prior": by_prior,
          "decided_by_rank": len(decisions) - by_prior,
          "empty_nodes": sum(d["empty"] for d in decisions), "decisions": decisions}


def cell_parameters(size: int, num_nodes: int) -> int:
  """Weights of the cell at hidden size n: W_0 [2n, 2n] and N × [n, 2n] (the
  same for every genotype: node k's in-edges share W_k)."""
  return 2 * size * 2 * size + num_nodes * size * 2 * size


def make(space_config) -> SearchSpace:
  """The recurrent space of `space_config` (`configs/darts_ptb_search.py`). Its
  inputs are token windows, not images: `init_weights(key, (vocab_size,))` and
  `apply(weights, arch, tokens [B, T], masks)` → next-token logits [B, T, V] from
  a zero state (`lm.model`); the search itself runs in `lm.search`."""
  validate(space_config)
  spec = cell_spec(space_config.num_nodes, tuple(space_config.ops))

  def init_weights(key, shape):
    from bayesnas_jax.lm import model  # pylint: disable=import-outside-toplevel
    return model.init_params(key, int(shape[0]), space_config.size, spec)

  def apply(weights, arch, tokens, masks=None):
    from bayesnas_jax.lm import model  # pylint: disable=import-outside-toplevel
    return model.logits(weights, arch, tokens, masks, spec, space_config)

  return SearchSpace(
      name="rnn",
      cells={KIND: spec},
      init_weights=init_weights,
      init_arch=lambda: init_arch(spec, space_config.get("arch_init", "ones")),
      apply=apply,
      derive=lambda prior_state, search: derive(spec, prior_state)[0],
      architecture_masks=lambda genotype, arch: genotype_masks(spec, genotype),
      export=lambda workdir, genotype, prior_state, search: write(workdir, genotype,
                                                                  prior_state, spec),
      load_architecture=lambda path: load_genotype(path, "genotype"),
      random_architecture=lambda rng: random_genotype(rng, spec),
      parameter_count=lambda genotype: cell_parameters(space_config.size,
                                                       len(genotype["recurrent"])))
