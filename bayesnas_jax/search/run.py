"""The search driver: Algorithm 1 as a resumable sequence of phases.

warm-up (weights alone, on `warmup_fraction` of the train split) → for each of
`rounds` rounds: joint training of W and w (eq. 21) → curvature of E_D w.r.t.
the architecture scalars, averaged over the round's batches (all, or the last
K) → HARD update and pruning → after the last round: derivation and export →
optionally a short retraining of the derived cell (w fixed to 1 on what
survives, SPEC §3 step 5) and its test accuracy.

Every batch and augmentation key is a pure function of (seed, phase, step), and
the state is checkpointed with orbax during and at the end of each phase, so a
relaunch on the same workdir resumes and ends with the same result.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import data as data_lib
from bayesnas_jax import spaces
from bayesnas_jax.checkpoints import Interrupted  # pylint: disable=unused-import (run.Interrupted)
from bayesnas_jax.loop import Run
from bayesnas_jax.metrics import MetricWriter, Progress
from bayesnas_jax.parallel import data_parallel
from bayesnas_jax.parallel import global_batch as _global_batch
from bayesnas_jax.prior import HardState
from bayesnas_jax.search import hard, objective, report


@flax.struct.dataclass
class CurvatureSums:
  """Running sums of the per-batch curvature of the architecture scalars (trees
  shaped like them) and the batch count: the round's mean and its noise."""
  total: Any
  squares: Any
  count: jax.Array

  @classmethod
  def zeros(cls, arch) -> "CurvatureSums":
    zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, arch)
    return cls(total=zeros(), squares=zeros(), count=jnp.zeros((), jnp.int32))

  def add(self, curvature) -> "CurvatureSums":
    """Adds one batch's curvature (and its square, for the noise of the mean)."""
    add = lambda a, b: jax.tree_util.tree_map(jnp.add, a, b)
    return CurvatureSums(total=add(self.total, curvature),
                         squares=add(self.squares, jax.tree_util.tree_map(jnp.square, curvature)),
                         count=self.count + 1)

  def mean_and_se(self):
    """(mean, standard error) trees over the batches added (`curvature_mean_and_se`)."""
    return curvature_mean_and_se(self.total, self.squares, self.count)


@flax.struct.dataclass
class SearchState:
  """What the search carries between steps (and checkpoints): `params` is
  {"weights", "arch"}, the optimizer state is over both; `masks` are 1 on the
  (edge, op) scalars the prior keeps and 0 on the pruned; `eval_sums` holds
  (loss · n, accuracy · n, n) over the test phase."""
  params: Any
  opt_state: Any
  prior: HardState
  masks: Any
  curvature: CurvatureSums
  eval_sums: jax.Array


def build_schedule(config, sizes):
  """The phases of the run: (kind, round, steps, data part)."""
  search, batch = config.search, config.input.batch_size
  phases = []
  if sizes["warmup"]:
    for _ in range(search.warmup_epochs):
      phases.append(("warmup", -1, data_lib.steps_per_epoch(sizes["warmup"], batch), "warmup"))
  train_steps = data_lib.steps_per_epoch(sizes["search"], batch)
  for r in range(search.rounds):
    for _ in range(search.epochs_per_round):
      phases.append(("train", r, train_steps, "search"))
    if search.curvature_pass == "after":
      k = search.curvature_batches
      phases.append(("curvature", r, min(k, train_steps) if k > 0 else train_steps,
                     "search"))
    phases.append(("update", r, 1, None))
    if r < search.rounds - 1:
      # Algorithm 1 step 5 between rounds: w = 1 on the survivors, weights trained.
      for _ in range(search.get("retrain_between_rounds", 0)):
        phases.append(("step5", r, train_steps, "search"))
  if config.retrain.epochs:
    retrain_steps = data_lib.steps_per_epoch(sizes["train"], batch)
    for _ in range(config.retrain.epochs):
      phases.append(("retrain", -1, retrain_steps, "train"))
    phases.append(("test", -1, data_lib.steps_per_epoch(sizes["test"], batch, False), "test"))
  for kind, _, steps, part in phases:
    if steps < 1 and kind != "update":
      raise ValueError(f"config.input.batch_size: {batch} is larger than the "
                       f"{part} data ({sizes[part]} examples); lower it")
  return phases


def _load_data(config):
  splits = data_lib.load_splits(dict(config.data))
  skipped = sum(split.skipped for split in splits.values())
  if skipped:
    print(f"data: {skipped} unreadable image files skipped (data.skip_unreadable)",
          file=sys.stderr)
  train = data_lib.take_examples(splits[config.data.splits[0]],
                                 config.input.get("train_examples", 0))
  test = splits[config.data.splits[1]] if len(config.data.splits) > 1 else None
  if test is not None:
    test = data_lib.take_examples(test, config.input.get("test_examples", 0))
  if train.num_classes > config.space.num_classes:
    raise ValueError(f"config.space.num_classes: {config.space.num_classes} is fewer than "
                     f"the {train.num_classes} classes of the data")
  fraction = config.search.warmup_fraction
  if fraction > 0:
    warmup_idx, search_idx = data_lib.split_indices(len(train), (fraction, 1 - fraction),
                                                    config.seed)
  else:
    warmup_idx, search_idx = np.zeros((0,), np.int64), np.arange(len(train))
  parts = {"warmup": warmup_idx, "search": search_idx, "train": np.arange(len(train)),
           # The search network normalises with batch statistics, so test batches
           # must mix classes: a fixed shuffle of the test split.
           "test": (data_lib.epoch_order(len(test), config.seed, 0) if test is not None
                    else np.zeros((0,), np.int64))}
  return train, test, parts, skipped


def _batch(dataset, indices, batch_size, seed, epoch, step, shuffle=True, drop=True):
  if not drop:
    positions = np.arange(step * batch_size, min((step + 1) * batch_size, len(indices)))
  else:
    positions = data_lib.batch_indices(len(indices), batch_size, seed=seed, epoch=epoch,
                                       step=step, shuffle=shuffle)
  chosen = indices[positions]
  return {"image": dataset.images[chosen], "label": dataset.labels[chosen]}


def initial_state(config, space, key, image_shape) -> SearchState:
  """Fresh weights and scalars of `space`, optimizer and HARD state."""
  weights = space.init_weights(key, image_shape)
  arch = space.init_arch()
  params = {"weights": weights, "arch": arch}
  optimizer = objective.make_optimizer(config.search)
  prior_state = hard.init_prior(arch, config.search.grouping)
  return SearchState(params=params, opt_state=optimizer.init(params), prior=prior_state,
                     masks=hard.network_masks(prior_state.keep, arch),
                     curvature=CurvatureSums.zeros(arch),
                     eval_sums=jnp.zeros((3,), jnp.float32))


def run_search(config, workdir: str, log=print, space=None):
  """Runs (or resumes) the search of `config` in `workdir`; returns the summary.

  `space` is the `SearchSpace` to search, by default `spaces.make(config.space)`."""
  space = spaces.make(config.space) if space is None else space
  train, test, parts, skipped = _load_data(config)
  sizes = {k: len(v) for k, v in parts.items()}
  phases = build_schedule(config, sizes)
  batch_sharding, replicated = data_parallel(config.input.batch_size)
  os.makedirs(workdir, exist_ok=True)
  base_key = jax.random.PRNGKey(config.seed)
  state = initial_state(config, space, jax.random.fold_in(base_key, 0), train.image_shape)
  optimizer, train_step, curvature_step, eval_step = objective.make_steps(config, space)
  steps_per_round = sum(p[2] for p in phases if p[0] == "train" and p[1] == 0)
  lambdas = objective.penalty_lambdas(config.search, steps_per_round)
  budget = {part: config.search.learning_rate * lam * steps_per_round
            for part, lam in lambdas.items()}
  log(f"penalty budget per round (lr · λ · steps, at ω = 1): {budget['ops']:.3g} for op "
      f"scalars, {budget['origin']:.3g} for origins")
  hint = "lower search.learning_rate or check the data"
  run = Run(workdir, state, checkpoint_every_steps=config.checkpoint_every_steps,
            stop_after_steps=config.get("stop_after_steps", 0), hint=hint, log=log,
            position={"global_step": 0, "elapsed": {}, "skipped_files": skipped})
  run.state = jax.device_put(run.state, replicated)
  position = run.position
  writer = MetricWriter(workdir, tensorboard=config.tensorboard)
  batch_size = config.input.batch_size
  try:
    for index, (kind, round_, steps, part) in enumerate(phases):
      name = f"phase {index + 1}"
      if run.finished(name):
        continue
      label = f"{kind}" + (f" round {round_ + 1}/{config.search.rounds}" if round_ >= 0 else "")
      progress = Progress(f"[{index + 1}/{len(phases)}] {label}", steps, batch_size)
      started = time.perf_counter()
      metrics = {}
      # λ·ω of eq. 21 for this phase (ω changes only at an update).
      factor = hard.lambda_factor(config.search.get("lambda_ramp", "none"), max(round_, 0),
                                  config.search.rounds)
      penalty = objective.penalty_weights(run.state.prior.omega,
                                          {k: v * factor for k, v in lambdas.items()})
      if kind in ("retrain", "step5"):
        penalty = (jnp.zeros_like(penalty[0]), penalty[1])
      if kind == "update" and run.step(name) == 0:
        run.watch.add(label, 0, {"curvature": run.state.curvature.total})
        run.check()
        run.state = _update(run.state, config, space, round_, workdir, log)
        if round_ < config.search.rounds - 1 and config.search.get("retrain_between_rounds", 0):
          run.state = step5_reset(run.state, optimizer)
        position["steps"][name] = 1  # done, and not a step of stop_after_steps
      for step in range(run.step(name), steps):
        # The curvature pass reads the last K batches of the round's last epoch.
        epoch = index - 1 if kind == "curvature" else index
        offset = phases[index - 1][2] - steps if kind == "curvature" else 0
        batch = _batch(train if part != "test" else test, parts[part], batch_size,
                       config.seed, epoch, step + offset, drop=kind != "test")
        if kind != "test":
          batch = _global_batch(batch, batch_sharding)
        key = jax.random.fold_in(jax.random.fold_in(base_key, index + 1), step)
        # With curvature_pass "during", the last epoch of a round accumulates the
        # curvature of its batches (all, or the last K).
        k = config.search.curvature_batches
        accumulate = (kind == "train" and config.search.curvature_pass == "during"
                      and phases[index + 1][0] == "update" and (k == 0 or step >= steps - k))
        run.state, metrics = _step(kind, run.state, batch, key, train_step, curvature_step,
                                   eval_step, accumulate, penalty)
        run.watch.add(label, step, {k: metrics[k] for k in ("loss", "grad_norm")
                                    if k in metrics})
        position["global_step"] += 1
        done = step + 1
        if (done % config.log_every_steps == 0 or done == steps) and metrics:
          run.check()  # before anything is logged
          metrics = jax.device_get(metrics)
          rate = progress.update(done, metrics, force=True)
          writer.write(position["global_step"], kind, metrics, round=round_,
                       images_per_s=rate)
        run.advance(name)
      elapsed = position["elapsed"]
      elapsed[kind] = elapsed.get(kind, 0.0) + time.perf_counter() - started
      if kind == "test":
        _finish_test(run.state, workdir, writer, position)
      if kind == "update" and round_ == config.search.rounds - 1:
        report.write_search_outputs(config, workdir, space, run.state.prior, position)
        _log_decisions(position.get("space_summary", {}), log)
        if config.retrain.epochs:
          run.state = jax.device_put(
              _start_retrain(run.state, config, space, workdir, base_key, train.image_shape),
              replicated)
      run.finish(name)
  finally:
    writer.close()
    run.close()
  return report.finish(config, workdir, position)


def _log_decisions(summary, log):
  """Says how the derived architecture was decided: by the prior, or by rank
  where the prior left several candidates, and which margins are inside the
  curvature's noise."""
  if "decided_by_prior" not in summary:
    return
  total = summary["decided_by_prior"] + summary["decided_by_rank"]
  log(f"derived: {summary['decided_by_prior']}/{total} decisions made by the prior, "
      f"{summary['decided_by_rank']} by rank (search.rank_by) among several survivors")
  for d in summary.get("decisions", []):
    if d.get("empty"):
      log(f"  warning: {d['edge']}: the prior pruned every input; {d['op']}")
    elif d["decided_by"] == "rank":
      kept = d["survivors"]
      shown = ", ".join(kept[:4]) + (f", … ({len(kept)} in all)" if len(kept) > 4 else "")
      log(f"  {d['edge']}: the prior kept {shown}; rank chose {d['op']}")
    if d.get("inside_noise"):
      log(f"  {d['edge']}: {d['op']} is inside the noise (margin {d['margin']:.2f} s.e.); "
          f"another run may decide otherwise")


def step5_reset(state, optimizer):
  """Algorithm 1 step 5 before the next round: w = 1 on every surviving scalar
  (0 on the pruned), and a fresh optimizer state, so that the weights train in
  the standard way on the pruned network (the "step5" phase, w frozen)."""
  params = {**state.params, "arch": state.masks}  # 1 on survivors, 0 on the pruned
  return state.replace(params=params, opt_state=optimizer.init(params))


def _step(kind, state, batch, key, train_step, curvature_step, eval_step, accumulate,
          penalty):
  if kind in ("warmup", "train", "retrain", "step5"):
    arch_scale = jnp.asarray(1.0 if kind == "train" else 0.0)
    params, opt_state, metrics, curvature = train_step(
        state.params, state.opt_state, batch, key, penalty, state.masks, arch_scale)
    state = state.replace(params=params, opt_state=opt_state)
    if accumulate:
      state = state.replace(curvature=state.curvature.add(curvature))
    return state, metrics
  if kind == "curvature":
    loss, curvature = curvature_step(state.params, batch, state.masks, key)
    return state.replace(curvature=state.curvature.add(curvature)), {"loss": loss}
  loss, accuracy = eval_step(state.params, batch, state.masks)
  n = batch["label"].shape[0]
  sums = state.eval_sums + jnp.asarray([loss * n, accuracy * n, n], jnp.float32)
  return state.replace(eval_sums=sums), {"loss": loss, "accuracy": accuracy}


def curvature_mean_and_se(total, squares, count):
  """Mean of the per-batch curvatures and its standard error over the batches
  (sample variance / count; 0 with one batch)."""
  n = jnp.maximum(count, 1).astype(jnp.float32)
  mean = jax.tree_util.tree_map(lambda h: h / n, total)
  def se(h2, m):
    var = jnp.maximum(h2 / n - jnp.square(m), 0.0) * n / jnp.maximum(n - 1.0, 1.0)
    return jnp.where(count > 1, jnp.sqrt(var / n), 0.0)
  return mean, jax.tree_util.tree_map(se, squares, mean)


def _update(state, config, space, round_, workdir, log):
  curvature, curvature_se = state.curvature.mean_and_se()
  search = config.search
  factor = hard.lambda_factor(search.get("lambda_ramp", "none"), round_, search.rounds)
  new_prior, records, clamped = hard.hard_update(
      state.params["arch"], curvature, state.prior, spec=spaces.cell_specs(space),
      lambda_w=float(search.lambda_w) * factor, grouping=search.grouping,
      dependency=search.dependency, threshold=float(search.prune_threshold),
      lambda_w_origin=float(search.get("lambda_w_origin", 0.0)) * factor,
      rank_by=search.get("rank_by", "gamma"),
      zero_curvature=search.get("zero_curvature", "keep"),
      zero_tolerance=float(search.get("zero_tolerance", 1e-6)),
      prune_rule=search.get("prune_rule", "entropy"), curvature_se=curvature_se)
  report.write_round(workdir, round_, space, jax.device_get(records), int(clamped))
  kept = sum(int(np.sum(np.asarray(v["ops"]))) for v in new_prior.keep.values())
  total = sum(int(np.size(np.asarray(v["ops"]))) for v in new_prior.keep.values())
  log(f"round {round_ + 1}: kept {kept}/{total} (edge, op) groups "
      f"({search.get('prune_rule', 'entropy')} rule, λ_w {float(search.lambda_w) * factor:.3g}); "
      f"{int(clamped)} negative curvature entries clamped")
  for kind, keep in new_prior.keep.items():
    if not np.any(np.asarray(keep["ops"])):
      log(f"warning: round {round_ + 1} pruned every (edge, op) group of the {kind} cells; "
          f"the derived {kind} cell is empty (lower search.lambda_w or "
          f"search.penalty_budget)")
  masks = hard.network_masks(new_prior.keep, state.params["arch"])
  arch = jax.tree_util.tree_map(lambda w, m: w * m, state.params["arch"], masks)
  return state.replace(prior=new_prior, masks=masks, params={**state.params, "arch": arch},
                       curvature=CurvatureSums.zeros(state.curvature.total))


def _start_retrain(state, config, space, workdir, base_key, image_shape):
  """Fresh weights; w fixed to 1 on the derived cell's (edge, op) pairs."""
  architecture = space.load_architecture(os.path.join(workdir, "genotype.json"))
  fresh = initial_state(config, space, jax.random.fold_in(base_key, 10_000), image_shape)
  masks = space.architecture_masks(architecture, fresh.params["arch"])
  return fresh.replace(masks=masks, prior=state.prior)


def _finish_test(state, workdir, writer, position):
  loss_sum, correct, n = (float(v) for v in jax.device_get(state.eval_sums))
  position["test"] = {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1),
                      "examples": int(n)}
  writer.write(position["global_step"], "test", position["test"])
