"""BayesNAS on the recurrent cell space: a word-level language model on PTB or
WikiText-2 (RNN thesis (R) ch. 3–5; the cell in `spaces.rnn`).

The search network is DARTS's recurrent search model: embedding (tied with the
softmax), one recurrent cell of `space.num_nodes` nodes, variational dropout on
the embeddings (`dropout_input`), the cell input (`dropout_x`), the hidden
nodes (`dropout_hidden`) and the output (`dropout_output`), the state carried
from window to window of contiguous streams (`data.text`). Per round
(Algorithm 1 of the paper, (R) eq. 3.15): one epoch of

    L = CE + λ‖W‖² + λ_w Σ_g ω_g ‖w_g‖

with SGD on W (gradient clipping, the step scaled by window length / bptt as
AWD-LSTM) and Adam on the architecture scalars w (DARTS's architecture
optimiser: plain SGD at the weights' learning rate of 20 would move a scalar
by λ_w·20 per step); then the scalars' curvature through time on
`search.curvature_windows` windows (`rnn.unroll`, horizon τ), the HARD update
of `search.hard` (eqs. 17–20, the cell's dependency graph) and pruning.
Derivation keeps k = 1 input per node: the kept (edge, op) pair with the
highest rank score (`search.rank_by`); a node whose every pair was pruned takes
its best pair regardless (a recurrent cell needs every node). The derived cell
is then trained from scratch (`train.steps`, the same network with only the
genotype's scalars on) and its validation perplexity reported.

Writes `genotype.json` ({"recurrent": [[op, from], ...], "concat": [1..N]},
node j's entry at position j − 1, as DARTS), `genotype.txt` (the DARTS
`Genotype(recurrent=..., concat=range(1, N + 1))` literal), `architecture.json`
(scalars, γ, scores, keep), `scalars.png` and `summary.json`.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnas_jax import export, nn, value_grad_curvature
from bayesnas_jax.data import text
from bayesnas_jax.metrics import FiniteWatch, NonFiniteError
from bayesnas_jax.search import hard
from bayesnas_jax.search.objective import sparsity_penalty
from bayesnas_jax.spaces import rnn
from bayesnas_jax.spaces.cell import masked_arch


_HINT = "lower train.learning_rate or search.arch_learning_rate, or check the data"


def _log(message):
  print(message, file=sys.stderr, flush=True)


def init_params(key, vocab_size: int, size: int, spec, init_range: float = 0.1):
  """Embedding [V, n] (tied with the softmax), the cell, and the softmax bias."""
  k0, k1 = jax.random.split(key)
  return {"embedding": jax.random.uniform(k0, (vocab_size, size), minval=-init_range,
                                          maxval=init_range),
          "cell": rnn.init_cell(k1, size, size, spec.num_nodes),
          "bias": jnp.zeros((vocab_size,))}


def _mask(key, shape, rate):
  if key is None or rate <= 0:
    return None
  return jax.random.bernoulli(key, 1 - rate, shape).astype(jnp.float32) / (1 - rate)


def lm_loss(params, arch, inputs, targets, h0, spec, space, rates=None, key=None,
            horizon=0):
  """Mean cross-entropy per token of windows inputs/targets [B, T] from state
  h0 [B, n]; returns (loss, h_T). `rates`: {"input", "x", "hidden", "output"}
  dropout rates, applied when `key` is given (variational: one mask per window)."""
  size = nn.value_of(params["embedding"]).shape[1]
  batch = inputs.shape[0]
  x = nn.structural(lambda e: e[inputs.T], params["embedding"])            # [T, B, n]
  masks = {}
  if key is not None and rates:
    keys = jax.random.split(key, 4)
    masks = {name: _mask(k, (batch, size), rates[name])
             for k, name in zip(keys, ("input", "x", "hidden", "output"))}
  if masks.get("input") is not None:
    x = nn.scale(x, masks["input"][None])
  outputs, h_last = rnn.unroll(params["cell"], arch, x, h0, spec, norm=space.norm,
                               origin=space.origin, horizon=horizon,
                               x_mask=masks.get("x"), h_mask=masks.get("hidden"))
  if masks.get("output") is not None:
    outputs = nn.scale(outputs, masks["output"][None])
  decoder = nn.structural(lambda e: e.T, params["embedding"])
  logits = nn.dense(outputs, decoder, params["bias"])
  return nn.softmax_cross_entropy(logits, targets.T), nn.value_of(h_last)


def _masked(arch, masks):
  """Scalars with the pruned ones at 0 (plain or probed scalars)."""
  return masked_arch(arch, masks)


class Steps:
  """The jitted steps of a search or a derived-cell training, built once."""

  def __init__(self, spec, config, train_arch: bool, norm: str | None = None):
    t = config.train
    s = types.SimpleNamespace(norm=norm or config.space.norm, origin=config.space.origin)
    rates = {"input": t.dropout_input, "x": t.dropout_x, "hidden": t.dropout_hidden,
             "output": t.dropout_output}
    self.weight_opt = optax.chain(optax.clip_by_global_norm(t.grad_clip),
                                  optax.sgd(t.learning_rate))
    self.arch_opt = optax.adam(config.search.arch_learning_rate)
    lambda_w = float(config.search.lambda_w)
    # "adam": the L1 term goes through Adam with the data gradient (eq. 3.15 as
    # written); under the nodes' batch norm the data gradient along a node's
    # common scale is 0, so Adam moves every scalar by about its learning rate
    # per step towards 0 whatever λ_w is. "decoupled": Adam sees the data
    # gradient alone and the L1 term is a proximal step of size lr·λ_w·ω per
    # step, so one round shrinks a scalar by at most steps·lr·λ_w·ω.
    penalty_update = config.search.get("penalty_update", "adam")
    decoupled = train_arch and penalty_update == "decoupled"
    arch_lr = float(config.search.arch_learning_rate)

    def objective(params, arch, masks, omega, inputs, targets, h, key):
      data, h_new = lm_loss(params, _masked(arch, masks)[rnn.KIND], inputs, targets, h, spec,
                            s, rates, key)
      total = data + t.weight_decay * sum(jnp.sum(jnp.square(w))
                                          for w in jax.tree_util.tree_leaves(params))
      if train_arch and not decoupled:
        total = total + lambda_w * sparsity_penalty(arch, omega, "cell_type")
      return total, (data, h_new)

    @jax.jit
    def train_step(params, arch, opt_w, opt_a, masks, omega, inputs, targets, h, key, scale):
      (_, (data, h_new)), (g_w, g_a) = jax.value_and_grad(
          objective, argnums=(0, 1), has_aux=True)(params, arch, masks, omega, inputs,
                                                   targets, h, key)
      updates, opt_w = self.weight_opt.update(g_w, opt_w, params)
      params = optax.apply_updates(params, jax.tree_util.tree_map(lambda u: u * scale, updates))
      if train_arch:
        updates, opt_a = self.arch_opt.update(g_a, opt_a, arch)
        arch = optax.apply_updates(arch, updates)
        if decoupled:
          arch = jax.tree_util.tree_map(
              lambda w, o: jnp.sign(w) * jnp.maximum(jnp.abs(w) - arch_lr * lambda_w * o, 0.0),
              arch, omega)
        arch = _masked(arch, masks)
      return params, arch, opt_w, opt_a, data, h_new

    @jax.jit
    def curvature_step(params, arch, masks, inputs, targets, h):
      def loss(a):
        return lm_loss(params, _masked(a, masks)[rnn.KIND], inputs, targets, h, spec, s,
                       horizon=config.search.horizon)
      (_, h_new), _, curvature = value_grad_curvature(
          loss, arch, mode=config.search.curvature_mode, has_aux=True)
      return curvature, h_new

    @jax.jit
    def eval_step(params, arch, masks, inputs, targets, h):
      return lm_loss(params, _masked(arch, masks)[rnn.KIND], inputs, targets, h, spec, s)

    self.train_step, self.curvature_step, self.eval_step = train_step, curvature_step, eval_step


def perplexity(steps, params, arch, masks, stream, bptt, size):
  """exp of the mean cross-entropy over a batched stream [B, L], fixed windows."""
  h = jnp.zeros((stream.shape[0], size))
  total, count = 0.0, 0
  for inputs, targets, length in text.windows(stream, bptt, seed=0, epoch=0,
                                              random_length=False):
    loss, h = steps.eval_step(params, arch, masks, jnp.asarray(inputs), jnp.asarray(targets), h)
    total += float(loss) * length
    count += length
  mean = total / max(count, 1)
  if not math.isfinite(mean):
    raise NonFiniteError(f"validation: the loss turned non-finite ({mean}); stopped, "
                         f"nothing written; {_HINT}")
  # exp overflows a float64 above 709.78: such a perplexity is reported as inf.
  return math.exp(mean) if mean < 709.0 else float("inf")


def derive(spec, state, arch, by_rank=()):
  """{"recurrent": [[op, from], ...], "concat": [1..N]}: per node its one
  surviving (edge, op) pair (decided by the prior, unless the node is in
  `by_rank`: a round pruned its last pairs together and `search.keep_last` kept
  the best by rank), else its best kept pair by the rank score (decided by rank
  among several survivors), else, where the prior pruned every pair into the
  node, its best pair overall (an empty node, decided by rank). Returns
  (genotype, decisions), one decision per node."""
  score = np.asarray(state["score"][rnn.KIND]["ops"], np.float64)
  keep = np.asarray(state["keep"][rnn.KIND]["ops"], bool)
  del arch
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
  pairs = ", ".join(f"('{op}', {source})" for op, source in genotype["recurrent"])
  nodes = genotype["concat"]
  return f"Genotype(recurrent=[{pairs}], concat=range({nodes[0]}, {nodes[-1] + 1}))"


def genotype_masks(spec, genotype):
  """Masks that switch on exactly the genotype's (edge, op) pairs and origins."""
  ops = np.zeros((1, spec.num_edges, len(spec.ops)), np.float32)
  for node, (op, source) in zip(spec.intermediate, genotype["recurrent"]):
    if op not in spec.ops or not 0 <= int(source) < node:
      raise ValueError(f"genotype: node {node} cannot take ({op!r}, {source}); expected an "
                       f"op of {spec.ops} from a node < {node}")
    ops[0, spec.edges.index((int(source), node)), spec.ops.index(op)] = 1.0
  return {rnn.KIND: {"origin": jnp.asarray(ops.any(-1), jnp.float32), "ops": jnp.asarray(ops)}}


def validate(config):
  s, t, se = config.space, config.train, config.search
  for field, value, low in (("space.num_nodes", s.num_nodes, 1), ("space.size", s.size, 1),
                            ("input.batch_size", config.input.batch_size, 1),
                            ("input.bptt", config.input.bptt, 2),
                            ("search.rounds", se.rounds, 1),
                            ("search.curvature_windows", se.curvature_windows, 1),
                            ("search.horizon", se.horizon, 0),
                            ("train.steps", t.steps, 0)):
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      raise ValueError(f"config.{field}: expected an integer >= {low}, got {value!r}")
  if s.norm not in rnn.NORMS:
    raise ValueError(f"config.space.norm: expected one of {rnn.NORMS}, got {s.norm!r}")
  if config.train.get("norm", "none") not in rnn.NORMS:
    raise ValueError(f"config.train.norm: expected one of {rnn.NORMS}, got "
                     f"{config.train.norm!r}")
  if s.get("arch_init", "ones") not in rnn.ARCH_INITS:
    raise ValueError(f"config.space.arch_init: expected one of {rnn.ARCH_INITS}, got "
                     f"{s.arch_init!r}")
  if s.origin not in rnn.ORIGINS:
    raise ValueError(f"config.space.origin: expected one of {rnn.ORIGINS}, got {s.origin!r}")
  if se.get("penalty_update", "adam") not in ("adam", "decoupled"):
    raise ValueError(f"config.search.penalty_update: expected 'adam' or 'decoupled', got "
                     f"{se.penalty_update!r}")
  if se.get("prune_rule", "entropy") not in hard.PRUNE_RULES:
    raise ValueError(f"config.search.prune_rule: expected one of {hard.PRUNE_RULES}, got "
                     f"{se.prune_rule!r}")
  if se.get("lambda_ramp", "none") not in hard.LAMBDA_RAMPS:
    raise ValueError(f"config.search.lambda_ramp: expected one of {hard.LAMBDA_RAMPS}, got "
                     f"{se.lambda_ramp!r}")
  if se.rank_by not in hard.RANK_BY:
    raise ValueError(f"config.search.rank_by: expected one of {hard.RANK_BY}, got "
                     f"{se.rank_by!r}")
  for name in ("dropout_input", "dropout_x", "dropout_hidden", "dropout_output"):
    if not 0 <= t[name] < 1:
      raise ValueError(f"config.train.{name}: expected a rate in [0, 1), got {t[name]!r}")


@jax.jit
def _running_mean(mean, params, count):
  """mean of `count` iterates updated with one more (ASGD's averaged iterate)."""
  return jax.tree_util.tree_map(lambda m, p: m + (p - m) / (count + 1), mean, params)


def _epoch(steps, params, arch, opt_w, opt_a, masks, omega, stream, config, key, epoch,
           limit, label, log, average=None):
  """One epoch (or `limit` steps); `average` = (mean, count) is updated after
  every step when given (ASGD)."""
  size = config.space.size
  h = jnp.zeros((stream.shape[0], size))
  losses, done, watch = [], 0, FiniteWatch()
  for inputs, targets, length in text.windows(stream, config.input.bptt, seed=config.seed,
                                              epoch=epoch, max_len=config.input.bptt + 20,
                                              random_length=config.input.random_length,
                                              quantum=config.input.length_quantum):
    key, sub = jax.random.split(key)
    params, arch, opt_w, opt_a, loss, h = steps.train_step(
        params, arch, opt_w, opt_a, masks, omega, jnp.asarray(inputs), jnp.asarray(targets), h,
        sub, jnp.float32(length / config.input.bptt))
    losses.append(loss)
    watch.add(label, done, {"loss": loss})
    done += 1
    if average is not None:
      average = (_running_mean(average[0], params, average[1]), average[1] + 1)
    if done % config.log_every_steps == 0:
      watch.check(_HINT)
      log(f"{label}: step {done}, loss {float(np.mean(jax.device_get(losses[-50:]))):.3f}")
    if limit and done >= limit:
      break
  watch.check(_HINT)
  if average is not None:
    return params, arch, opt_w, opt_a, key, done, average
  return params, arch, opt_w, opt_a, key, done


def run(config, workdir: str, log=_log):
  """The search, the derived cell's training, and the files (module docstring)."""
  validate(config)
  start = time.perf_counter()
  corpus = text.load_text(config.data.path or config.data.name, config.data.get("data_dir", ""))
  spec = rnn.cell_spec(config.space.num_nodes, tuple(config.space.ops))
  batch, size = config.input.batch_size, config.space.size
  train = text.batchify(corpus.train, batch)
  valid = text.batchify(corpus.valid, config.input.eval_batch_size)
  if config.input.get("valid_tokens", 0):
    valid = valid[:, :max(config.input.valid_tokens // valid.shape[0], 2)]
  os.makedirs(workdir, exist_ok=True)
  log(f"corpus: {len(corpus.vocab)} words, {corpus.train.size} training tokens; "
      f"cell of {spec.num_nodes} nodes, {spec.num_edges} edges × {len(spec.ops)} ops")
  key = jax.random.PRNGKey(config.seed)
  key, k_init = jax.random.split(key)
  params = init_params(k_init, len(corpus.vocab), size, spec)
  arch = rnn.init_arch(spec, config.space.get("arch_init", "ones"))
  state = hard.init_prior(arch, "cell_type")
  masks = hard.network_masks(state["keep"], arch)
  steps = Steps(spec, config, train_arch=True)
  opt_w, opt_a = steps.weight_opt.init(params), steps.arch_opt.init(arch)
  ppl_initial = perplexity(steps, params, arch, masks, valid, config.input.bptt, size)
  log(f"valid perplexity before training: {ppl_initial:.1f}")
  rounds, by_rank = [], set()
  limit = config.search.get("steps_per_round", 0)
  for round_ in range(config.search.rounds):
    t0 = time.perf_counter()
    params, arch, opt_w, opt_a, key, done = _epoch(
        steps, params, arch, opt_w, opt_a, masks, state["omega"], train, config, key, round_,
        limit, f"round {round_ + 1}", log)
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    curvature, h = None, jnp.zeros((batch, size))
    for i, (inputs, targets, _) in enumerate(text.windows(train, config.input.bptt,
                                                          seed=config.seed + 1, epoch=round_,
                                                          random_length=False)):
      if i >= config.search.curvature_windows:
        break
      c, h = steps.curvature_step(params, arch, masks, jnp.asarray(inputs),
                                  jnp.asarray(targets), h)
      curvature = c if curvature is None else jax.tree_util.tree_map(jnp.add, curvature, c)
    count = min(i + 1, config.search.curvature_windows)
    curvature = jax.tree_util.tree_map(lambda v: v / count, curvature)
    curvature_watch = FiniteWatch()
    curvature_watch.add(f"round {round_ + 1}: curvature", count - 1, {"curvature": curvature})
    curvature_watch.check(_HINT)
    jax.block_until_ready(curvature)
    curvature_seconds = time.perf_counter() - t0
    factor = hard.lambda_factor(config.search.get("lambda_ramp", "none"), round_,
                                config.search.rounds)
    keep_last = bool(config.search.get("keep_last", False))
    state, records, _ = hard.hard_update(
        arch, curvature, state, spec=spec, lambda_w=float(config.search.lambda_w) * factor,
        grouping="cell_type", dependency=config.search.dependency,
        rank_by=config.search.rank_by, zero_curvature=config.search.zero_curvature,
        prune_rule=config.search.get("prune_rule", "entropy"), keep_last=keep_last)
    if keep_last:
      restored = np.asarray(records[rnn.KIND]["ops"]["restored"])
      alive_before = np.asarray(state["alive_before"][rnn.KIND]["ops"])
      for node in spec.intermediate:
        into = spec.in_edges(node)
        if restored[into].any() and alive_before[into].sum() > 1:
          # The rule pruned several pairs at once; the rank chose the one kept.
          by_rank.add(node)
          log(f"  node {node}: round {round_ + 1} pruned all {int(alive_before[into].sum())} "
              f"remaining pairs; the best by search.rank_by stays (search.keep_last)")
    masks = hard.network_masks(state["keep"], arch)
    arch = _masked(arch, masks)
    kept = int(np.sum(np.asarray(state["keep"][rnn.KIND]["ops"])))
    rounds.append({"round": round_ + 1, "steps": done, "train_seconds": round(train_seconds, 2),
                   "curvature_seconds": round(curvature_seconds, 2), "kept_ops": kept,
                   "kept_origins": int(np.sum(np.asarray(state["keep"][rnn.KIND]["origin"])))})
    log(f"round {round_ + 1}: {done} steps in {train_seconds:.1f} s, curvature on "
        f"{count} windows in {curvature_seconds:.1f} s; {kept} of {spec.num_edges * len(spec.ops)}"
        f" (edge, op) pairs kept")
  genotype, decisions = derive(spec, state, arch, by_rank)
  by_prior = sum(d["decided_by"] == "prior" for d in decisions)
  log(f"derived: {by_prior}/{len(decisions)} nodes decided by the prior, "
      f"{len(decisions) - by_prior} by rank (search.rank_by)")
  for d in decisions:
    if d["empty"]:
      log(f"  warning: node {d['node']}: the prior pruned every input pair; the rank chose "
          f"({d['op']}, {d['from']}) (lower search.lambda_w)")
    elif d["decided_by"] == "rank" and d["survivors"] > 1:
      log(f"  node {d['node']}: the prior kept {d['survivors']} pairs; the rank chose "
          f"({d['op']}, {d['from']})")
    elif d["decided_by"] == "rank":
      log(f"  node {d['node']}: ({d['op']}, {d['from']}) kept by rank among the pairs its "
          f"last pruning round removed together (search.keep_last)")
  export.write_json(os.path.join(workdir, "genotype.json"), genotype)
  with open(os.path.join(workdir, "genotype.txt"), "w", encoding="utf-8") as f:
    f.write(genotype_literal(genotype) + "\n")
  record = {name: {part: np.asarray(v[rnn.KIND][part]).tolist() for part in ("origin", "ops")}
            for name, v in (("w", arch), ("gamma", state["gamma"]), ("score", state["score"]),
                            ("keep", state["keep"]))}
  record.update({"edges": [list(e) for e in spec.edges], "ops": list(spec.ops)})
  export.write_json(os.path.join(workdir, "architecture.json"), record)
  _plot(workdir, spec, state)
  log(f"derived cell: {genotype_literal(genotype)}")
  # The derived cell, trained from scratch with only its scalars on.
  derived_masks = genotype_masks(spec, genotype)
  key, k_init = jax.random.split(key)
  params = init_params(k_init, len(corpus.vocab), size, spec)
  ones = rnn.init_arch(spec)
  cell_steps = Steps(spec, config, train_arch=False, norm=config.train.norm)
  opt_w = cell_steps.weight_opt.init(params)
  total, epoch = 0, 0
  while total < config.train.steps:
    params, _, opt_w, _, key, done = _epoch(
        cell_steps, params, ones, opt_w, None, derived_masks, state["omega"], train, config,
        key, 1000 + epoch, config.train.steps - total, "derived cell", log)
    total += done
    epoch += 1
  ppl = perplexity(cell_steps, params, ones, derived_masks, valid, config.input.bptt, size)
  log(f"valid perplexity of the derived cell after {total} steps: {ppl:.1f}")
  summary = {"genotype": genotype, "genotype_literal": genotype_literal(genotype),
             "decided_by_prior": by_prior, "decided_by_rank": len(decisions) - by_prior,
             "empty_nodes": sum(d["empty"] for d in decisions), "decisions": decisions,
             "valid_perplexity_initial": round(ppl_initial, 2),
             "valid_perplexity": round(ppl, 2), "derived_cell_steps": total,
             "rounds": rounds, "seconds": round(time.perf_counter() - start, 1),
             "device": jax.devices()[0].device_kind}
  export.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def _plot(workdir, spec, state):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  score = np.asarray(state["score"][rnn.KIND]["ops"])
  keep = np.asarray(state["keep"][rnn.KIND]["ops"])
  fig, ax = plt.subplots(figsize=(8, 0.25 * spec.num_edges + 1))
  shown = np.where(keep, score, np.nan)
  image = ax.imshow(shown, aspect="auto", cmap="viridis")
  ax.set_yticks(range(spec.num_edges), [f"{j}→{k}" for j, k in spec.edges], fontsize=6)
  ax.set_xticks(range(len(spec.ops)), spec.ops)
  ax.set_title("rank score of kept (edge, op) pairs (blank: pruned)")
  fig.colorbar(image)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "scalars.png"), dpi=100)
  plt.close(fig)


def as_json(summary):
  return json.dumps(summary, indent=1)


def load_genotype(path: str):
  """genotype.json of a search: {"recurrent": [[op, from], ...], "concat": [...]}."""
  try:
    with open(path, encoding="utf-8") as f:
      genotype = json.load(f)
  except (OSError, ValueError) as err:
    raise ValueError(f"config.train.genotype: cannot read {path!r} as genotype.json "
                     f"({err.__class__.__name__})") from None
  recurrent = genotype.get("recurrent") if isinstance(genotype, dict) else None
  if not recurrent or not all(isinstance(e, list) and len(e) == 2 for e in recurrent):
    raise ValueError(f"config.train.genotype: {path} has no 'recurrent' list of "
                     f"[op, from_node] pairs")
  return genotype


def train_cell(config, workdir: str, log=_log):
  """Trains the cell of `config.train.genotype` from scratch (the evaluation of
  (R) §5): SGD, then averaged SGD once the validation loss stops improving
  (AWD-LSTM's non-monotone trigger: worse than the best of all but the last
  `train.nonmono` epochs); validation and test perplexity at the end, with the
  averaged weights once averaging has started."""
  validate(config)
  start = time.perf_counter()
  genotype = load_genotype(config.train.genotype)
  spec = rnn.cell_spec(len(genotype["recurrent"]), tuple(config.space.ops))
  masks = genotype_masks(spec, genotype)
  corpus = text.load_text(config.data.path or config.data.name, config.data.get("data_dir", ""))
  size = config.space.size
  train = text.batchify(corpus.train, config.input.batch_size)
  valid = text.batchify(corpus.valid, config.input.eval_batch_size)
  test = text.batchify(corpus.test, config.input.get("test_batch_size", 1))
  if config.input.get("valid_tokens", 0):
    valid = valid[:, :max(config.input.valid_tokens // valid.shape[0], 2)]
    test = test[:, :max(config.input.valid_tokens // test.shape[0], 2)]
  os.makedirs(workdir, exist_ok=True)
  key = jax.random.PRNGKey(config.seed)
  key, k_init = jax.random.split(key)
  params = init_params(k_init, len(corpus.vocab), size, spec)
  ones = rnn.init_arch(spec)
  steps = Steps(spec, config, train_arch=False, norm=config.train.norm)
  opt_w = steps.weight_opt.init(params)
  omega = hard.init_prior(ones, "cell_type")["omega"]
  log(f"training {genotype_literal(genotype)} at size {size}, "
      f"{sum(np.size(v) for v in jax.tree_util.tree_leaves(params))} parameters")
  history, average, asgd_from = [], None, None
  for epoch in range(config.train.epochs):
    out = _epoch(steps, params, ones, opt_w, None, masks, omega, train, config, key, epoch,
                 config.train.get("steps_per_epoch", 0), f"epoch {epoch + 1}", log,
                 average=average)
    params, _, opt_w, _, key, _ = out[:6]
    if average is not None:
      average = out[6]
    current = average[0] if average is not None else params
    ppl = perplexity(steps, current, ones, masks, valid, config.input.bptt, size)
    history.append(math.log(ppl))
    log(f"epoch {epoch + 1}: valid perplexity {ppl:.2f}" + (" (averaged)" if average else ""))
    nonmono = config.train.nonmono
    if (average is None and config.train.asgd and len(history) > nonmono
        and history[-1] > min(history[:-nonmono])):
      average, asgd_from = (params, 1), epoch + 2
      log(f"validation stopped improving: averaging weights from epoch {asgd_from}")
  final = average[0] if average is not None else params
  valid_ppl = perplexity(steps, final, ones, masks, valid, config.input.bptt, size)
  test_ppl = perplexity(steps, final, ones, masks, test, config.input.bptt, size)
  summary = {"genotype": genotype, "genotype_literal": genotype_literal(genotype),
             "valid_perplexity": round(valid_ppl, 2), "test_perplexity": round(test_ppl, 2),
             "valid_perplexity_by_epoch": [round(math.exp(v), 2) for v in history],
             "asgd_from_epoch": asgd_from,
             "parameters": int(sum(np.size(v) for v in jax.tree_util.tree_leaves(params))),
             "seconds": round(time.perf_counter() - start, 1),
             "device": jax.devices()[0].device_kind}
  export.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary
