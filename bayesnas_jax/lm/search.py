"""BayesNAS on the recurrent cell space: a word-level language model on PTB or
WikiText-2 (RNN thesis (R) ch. 3–5; the network in `lm.model`).

Per round (Algorithm 1 of the paper, (R) eq. 3.15): one epoch of

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
`Genotype(recurrent=..., concat=range(1, N + 1))` literal), `rounds/round_*.json`
and `architecture.json` (every round's per-scalar records and the decisions, as an
image search writes them: `launch.rederive` reads it), `scalars.png` and
`summary.json`. The space's discrete half (derivation, genotype files, masks,
random cells) is `spaces.rnn`.
"""
from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import files, prior, spaces
from bayesnas_jax.data import text
from bayesnas_jax.loop import Run
from bayesnas_jax.lm.model import (_HINT, LMState, _epoch, _log, _masked, init_params,
                                   perplexity, steps_for)
from bayesnas_jax.metrics import FiniteWatch
from bayesnas_jax.search import hard, report
from bayesnas_jax.spaces import rnn


# After the HARD update: none | conditional_evidence (`_within_node`).
WITHIN_NODE = ("none", "conditional_evidence")


def validate(config):
  rnn.validate(config.space)
  t, se = config.train, config.search
  for field, value, low in (("input.batch_size", config.input.batch_size, 1),
                            ("input.bptt", config.input.bptt, 2),
                            ("search.rounds", se.rounds, 1),
                            ("search.curvature_windows", se.curvature_windows, 1),
                            ("search.horizon", se.horizon, 0),
                            ("train.steps", t.steps, 0),
                            ("checkpoint_every_steps", config.get("checkpoint_every_steps", 0),
                             0),
                            ("stop_after_steps", config.get("stop_after_steps", 0), 0)):
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      raise ValueError(f"config.{field}: expected an integer >= {low}, got {value!r}")
  for field, value, choices in (
      ("train.norm", config.train.get("norm", "none"), rnn.NORMS),
      ("search.penalty_update", se.get("penalty_update", "adam"), ("adam", "decoupled")),
      ("search.prune_rule", se.get("prune_rule", "entropy"), hard.PRUNE_RULES),
      ("search.lambda_ramp", se.get("lambda_ramp", "none"), hard.LAMBDA_RAMPS),
      ("search.rank_by", se.rank_by, hard.RANK_BY),
      ("search.within_node", se.get("within_node", "none"), WITHIN_NODE)):
    if value not in choices:
      raise ValueError(f"config.{field}: expected one of {choices}, got {value!r}")
  for name in ("dropout_input", "dropout_x", "dropout_hidden", "dropout_output"):
    if not 0 <= t[name] < 1:
      raise ValueError(f"config.train.{name}: expected a rate in [0, 1), got {t[name]!r}")


def run(config, workdir: str, log=_log):
  """The search, the derived cell's training, and the files (module docstring)."""
  validate(config)
  start = time.perf_counter()
  corpus = text.load_text(config.data.path or config.data.name, config.data.get("data_dir", ""))
  space = spaces.make(config.space)
  spec = space.cells[rnn.KIND]
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
  prior_state = hard.init_prior(arch, "cell_type")
  steps = steps_for(spec, config, train_arch=True)
  cell_steps = steps_for(spec, config, train_arch=False, norm=config.train.norm)
  # Everything carried between steps, in one pytree of a fixed structure; the
  # derived cell's training reuses params, arch and opt_w.
  run = Run(workdir, LMState(params=params, arch=arch, opt_w=steps.weight_opt.init(params),
                             opt_a=steps.arch_opt.init(arch), key=key,
                             h=jnp.zeros((batch, size)), prior=prior_state,
                             masks=hard.network_masks(prior_state.keep, arch)),
            checkpoint_every_steps=config.get("checkpoint_every_steps", 0),
            stop_after_steps=config.get("stop_after_steps", 0), hint=_HINT, log=log)
  try:
    summary = _search(run, config, space, steps, cell_steps, corpus, train, valid, workdir,
                      log)
  finally:
    run.close()
  summary["seconds"] = round(time.perf_counter() - start, 1)
  files.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def _within_node(state, arch, block, spec, lambda_w):
  """`search.within_node = "conditional_evidence"`: after the HARD update, the
  pairs each node kept are tested again given one another
  (`prior.conditional_evidence_keep` on the sampled Gauss–Newton matrix of the
  pairs, `model.pair_fisher`), so of two pairs that compute the same feature
  the weaker goes. Returns (state with the new keep masks, pairs pruned)."""
  keep = state.keep[rnn.KIND]
  ops = np.asarray(keep["ops"]) & np.asarray(keep["origin"])[:, None]
  num_ops = ops.shape[1]
  node_of_edge = np.zeros(spec.num_edges, np.int32)
  for k, node in enumerate(spec.intermediate):
    node_of_edge[np.asarray(spec.in_edges(node))] = k
  groups = np.repeat(node_of_edge, num_ops)
  w = np.asarray(arch[rnn.KIND]["ops"], np.float64).reshape(-1)
  kept, _, _ = prior.conditional_evidence_keep(w, np.asarray(block), ops.reshape(-1), groups,
                                               len(spec.intermediate), lambda_w)
  kept = np.asarray(kept).reshape(ops.shape)
  origin, new_ops, _ = prior.cell_keep(jnp.asarray(kept.any(axis=1)), jnp.asarray(kept),
                                       spec.edges, spec.num_inputs)
  new_keep = {**state.keep, rnn.KIND: {"origin": origin, "ops": new_ops}}
  return state.replace(keep=new_keep), int(ops.sum() - np.asarray(new_ops).sum())


def _search(run, config, space, steps, cell_steps, corpus, train, valid, workdir, log):
  """The phases of `run` (module docstring); returns the summary."""
  spec = space.cells[rnn.KIND]
  batch, size = config.input.batch_size, config.space.size
  if not run.finished("initial"):
    s = run.state
    run.finish("initial", perplexity=perplexity(steps, s.params, s.arch, s.masks,
                                                valid, config.input.bptt, size))
  ppl_initial = run.record("initial")["perplexity"]
  log(f"valid perplexity before training: {ppl_initial:.1f}")
  limit = config.search.get("steps_per_round", 0)
  stop_when_decided = bool(config.search.get("stop_when_decided", False))
  done_rounds = config.search.rounds
  for round_ in range(config.search.rounds):
    train_phase, update_phase = f"round {round_ + 1}", f"update {round_ + 1}"
    previous = run.record(f"update {round_}") if round_ > 0 else {}
    if stop_when_decided and previous.get("decided", False):
      done_rounds = round_
      log(f"every node has one input pair after round {round_}: the remaining rounds are "
          f"skipped (search.stop_when_decided)")
      break
    if run.finished(update_phase):
      continue
    if not run.finished(train_phase):
      t0 = time.perf_counter()
      _epoch(steps, run, run.state.masks, run.state.prior.omega, train, config,
             round_, limit, train_phase, log)
      run.finish(train_phase, seconds=time.perf_counter() - t0)
    train_seconds = run.record(train_phase)["seconds"]
    done = run.step(train_phase)
    t0 = time.perf_counter()
    s = run.state
    params, arch, masks = s.params, s.arch, s.masks
    curvature, h = None, jnp.zeros((batch, size))
    block = 0.0
    within = config.search.get("within_node", "none")
    for i, (inputs, targets, _) in enumerate(text.windows(train, config.input.bptt,
                                                          seed=config.seed + 1, epoch=round_,
                                                          random_length=False)):
      if i >= config.search.curvature_windows:
        break
      inputs, targets = jnp.asarray(inputs), jnp.asarray(targets)
      if within == "conditional_evidence":
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 7919 * (round_ + 1) + i)
        block = block + steps.pair_fisher_step(params, arch, masks, inputs, h, key)
      c, h = steps.curvature_step(params, arch, masks, inputs, targets, h)
      curvature = c if curvature is None else jax.tree_util.tree_map(jnp.add, curvature, c)
    count = min(i + 1, config.search.curvature_windows)
    curvature = jax.tree_util.tree_map(lambda v: v / count, curvature)
    block = block / count
    curvature_watch = FiniteWatch()
    watched = {"curvature": curvature}
    if within == "conditional_evidence":
      watched["pair matrix"] = block
    curvature_watch.add(f"round {round_ + 1}: curvature", count - 1, watched)
    curvature_watch.check(_HINT)
    jax.block_until_ready(curvature)
    curvature_seconds = time.perf_counter() - t0
    factor = hard.lambda_factor(config.search.get("lambda_ramp", "none"), round_,
                                config.search.rounds)
    keep_last = bool(config.search.get("keep_last", False))
    state, records, clamped = hard.hard_update(
        arch, curvature, s.prior, spec=spec, lambda_w=float(config.search.lambda_w) * factor,
        grouping="cell_type", dependency=config.search.dependency,
        rank_by=config.search.rank_by, zero_curvature=config.search.zero_curvature,
        prune_rule=config.search.get("prune_rule", "entropy"), keep_last=keep_last)
    by_rank = []
    if keep_last:
      restored = np.asarray(records[rnn.KIND]["ops"]["restored"])
      alive_before = np.asarray(state.alive_before[rnn.KIND]["ops"])
      for node in spec.intermediate:
        into = spec.in_edges(node)
        if not restored[into].any():
          continue
        # The rule emptied the node; keep_last kept a pair the prior had pruned.
        by_rank.append(node)
        alive = int(alive_before[into].sum())
        if alive > 1:
          log(f"  node {node}: round {round_ + 1} pruned all {alive} remaining pairs; the "
              f"best by search.rank_by stays (search.keep_last)")
        else:
          log(f"  node {node}: round {round_ + 1} pruned its last pair; it stays "
              f"(search.keep_last), not decided by the prior")
    pruned_within = 0
    if within == "conditional_evidence":
      state, pruned_within = _within_node(state, arch, block, spec,
                                          float(config.search.lambda_w) * factor)
      log(f"  round {round_ + 1}: the conditional evidence within nodes pruned "
          f"{pruned_within} redundant pairs")
    records = jax.device_get(records)
    for part in ("origin", "ops"):   # the keep flags after the within-node test too
      records[rnn.KIND][part]["kept"] = np.asarray(state.keep[rnn.KIND][part])
    report.write_round(workdir, round_, space, records, int(clamped))
    masks = hard.network_masks(state.keep, arch)
    run.state = s.replace(prior=state, masks=masks, arch=_masked(arch, masks))
    kept = int(np.sum(np.asarray(state.keep[rnn.KIND]["ops"])))
    alive = np.asarray(state.keep[rnn.KIND]["ops"]) & np.asarray(
        state.keep[rnn.KIND]["origin"])[:, None]
    decided = all(int(alive[spec.in_edges(node)].sum()) == 1 for node in spec.intermediate)
    run.finish(update_phase, by_rank=by_rank, decided=decided, record={
        "round": round_ + 1, "steps": done, "train_seconds": round(train_seconds, 2),
        "curvature_seconds": round(curvature_seconds, 2), "kept_ops": kept,
        "pruned_within_nodes": int(pruned_within),
        "kept_origins": int(np.sum(np.asarray(state.keep[rnn.KIND]["origin"])))})
    log(f"round {round_ + 1}: {done} steps in {train_seconds:.1f} s, curvature on "
        f"{count} windows in {curvature_seconds:.1f} s; {kept} of {spec.num_edges * len(spec.ops)}"
        f" (edge, op) pairs kept")
  updates = [run.record(f"update {r + 1}") for r in range(done_rounds)]
  rounds = [u["record"] for u in updates]
  state, arch = run.state.prior, run.state.arch
  by_rank = sorted({n for u in updates for n in u["by_rank"]})
  genotype, decisions = rnn.derive(spec, state, by_rank)
  by_prior = sum(d["decided_by"] == "prior" for d in decisions)
  if not run.finished("derive"):
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
        log(f"  node {d['node']}: ({d['op']}, {d['from']}) kept by search.keep_last after "
            f"the prior pruned the node's last pairs")
    fields = rnn.write(workdir, genotype, state, spec, by_rank)
    # The threshold the update used (lm's hard_update takes the default).
    report.write_architecture(workdir, spec, prior.PRUNE_THRESHOLD, "cell_type", fields)
    log(f"derived cell: {rnn.genotype_literal(genotype)}")
    # The derived cell, trained from scratch with only its scalars on.
    key, k_init = jax.random.split(run.state.key)
    params = init_params(k_init, len(corpus.vocab), size, spec)
    run.state = run.state.replace(params=params, arch=rnn.init_arch(spec),
                                  opt_w=cell_steps.weight_opt.init(params), key=key)
    run.finish("derive")
  derived_masks = rnn.genotype_masks(spec, genotype)
  total, epoch = 0, 0
  while total < config.train.steps:
    phase = f"derived cell {epoch + 1}"
    if not run.finished(phase):
      _epoch(cell_steps, run, derived_masks, state.omega, train, config, 1000 + epoch,
             config.train.steps - total, phase, log)
      run.finish(phase)
    total += run.step(phase)
    epoch += 1
  ones = run.state.arch
  ppl = perplexity(cell_steps, run.state.params, ones, derived_masks, valid,
                   config.input.bptt, size)
  log(f"valid perplexity of the derived cell after {total} steps: {ppl:.1f}")
  return {"genotype": genotype, "genotype_literal": rnn.genotype_literal(genotype),
          "decided_by_prior": by_prior, "decided_by_rank": len(decisions) - by_prior,
          "empty_nodes": sum(d["empty"] for d in decisions), "decisions": decisions,
          "valid_perplexity_initial": round(ppl_initial, 2),
          "valid_perplexity": round(ppl, 2), "derived_cell_steps": total,
          "rounds": rounds, "seconds": 0.0, "device": jax.devices()[0].device_kind}


def as_json(summary):
  return json.dumps(summary, indent=1)
