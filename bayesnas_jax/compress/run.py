"""Structured compression by the HARD prior over weight groups (thesis Algorithm 2).

  1. dense baseline: `train.baseline_epochs` epochs of the plain loss ("before"), saved
     to `baseline/` (orbax, with the optimizer state); `compress.baseline_checkpoint`
     restores such a checkpoint instead of training;
  2. T_max = `compress.rounds` rounds, each `compress.epochs_per_round` epochs of
     E_D + Σ_l λ Σ_kinds Σ_g ω_g‖W_g‖₂ (eq. A-1), then the weights' diagonal
     curvature on `compress.curvature_batches` batches (the one-pass engine), the
     group update of `groups.update` (eqs. A-2–A-5), pruning and its structural
     consequences (`structure.unit_masks`); pruned weights stay 0. With
     `compress.lambda_ramp=linear` round t uses λ·t/T_max in the penalty and the update;
  3. `compress.finetune_epochs` epochs of the masked network without the penalty;
  4. export: the physically smaller network (`structure.compress`) saved with orbax
     (`compressed/`) and re-loaded for the "after" test error, which equals the
     masked network's; `summary.json`, `layers.md` (the per-layer table) and
     `sparsity.png`.

Every batch is a function of (seed, epoch, step). Progress goes to stderr.

Resumable through `loop.Run` (checkpoints in WORKDIR/checkpoints; relaunching the
same command continues bit-identically): the state holds the parameters, the
model's other collections, the optimizer state, the masks, the group states, the
kernel masks the structure follows and the current epoch's losses; the phases are
"baseline", "round r", "update r" (curvature, group update and pruning, atomic),
"select" (the baselines' cut) and "fine-tune". An epoch phase counts its steps over
all its epochs (step i: epoch i // steps, batch i % steps) and records the global
epoch count; "baseline" records the "before" figures, "update r" the round's entry
of summary.json. The distillation teacher is recomputed from the dense baseline.
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
import optax
import orbax.checkpoint as ocp

from bayesnas_jax import data as data_lib
from bayesnas_jax import files, nn, plots, value_grad_curvature
from bayesnas_jax.compress import groups, models, structure
from bayesnas_jax.checkpoints import Interrupted
from bayesnas_jax.loop import Run


@flax.struct.dataclass
class CompressState:
  """What a compression run carries between steps (and checkpoints): the
  model's `params` and other collections (`model_state`, e.g. batch
  statistics), the optimizer state, the 0/1 `masks` on every parameter, the
  HARD state of each penalised layer (`priors`, `groups.init_state`), each
  layer's kernel mask of surviving units, and the current epoch's losses (for
  its log line)."""
  params: Any
  model_state: Any
  opt_state: Any
  masks: Any
  priors: Any
  kernel_masks: Any
  losses: jax.Array

ZERO_CURVATURE = ("keep", "prune")
# bayes: Algorithm 2. magnitude / group_lasso: the baselines of the same tool — the
# same epochs without penalty / with the plain group lasso (ω = 1 throughout), then
# the units with the largest norms kept to `compress.target_architecture`.
METHODS = ("bayes", "magnitude", "group_lasso")
SCHEDULES = ("constant", "cosine")
DISTILL_TEMPERATURE = 2.0  # `compress.distill_temperature` where a config has none


def _log(message):
  print(message, file=sys.stderr, flush=True)


def layer_groups(config, layers):
  """{layer: (kinds…)} from config.compress.groups, checked (one-line errors)."""
  spec = config.compress.groups
  names = [layer.name for layer in layers]
  for name in spec:
    if name not in names:
      raise ValueError(f"config.compress.groups.{name}: no such layer (layers: "
                       f"{', '.join(names)})")
  out = {}
  for layer in layers:
    kinds = tuple(k.strip() for k in str(spec.get(layer.name, "")).split(",") if k.strip())
    for kind in kinds:
      groups.check_kind(kind, 2 if layer.kind == "dense" else 4,
                        f"config.compress.groups.{layer.name}")
    if kinds:
      out[layer.name] = kinds
  if not out:
    raise ValueError("config.compress.groups: no layer has groups to prune")
  return out


def layer_lambdas(config, kinds):
  """λ^l per layer (eq. A-1): `compress.layer_lambda.<layer>` where > 0, else
  `compress.lambda_` (`compress.group_lasso_lambda` for that baseline)."""
  c = config.compress
  if c.method == "group_lasso":
    return {name: c.group_lasso_lambda for name in kinds}
  given = c.get("layer_lambda", {}) or {}
  for name, value in given.items():
    if not value >= 0:
      raise ValueError(f"config.compress.layer_lambda.{name}: expected a number >= 0 "
                       f"(0: compress.lambda_), got {value!r}")
  return {name: float(given.get(name) or c.lambda_) for name in kinds}


LAMBDA_RAMPS = ("constant", "linear")


def ramp_factor(ramp, round_, rounds):
  """The share of λ^l that round `round_` (0-based) of `rounds` uses: 1, or
  (round_ + 1) / rounds for the linear ramp (gradual pruning)."""
  return 1.0 if ramp == "constant" else (round_ + 1) / rounds


def validate(config):
  c = config.compress
  for field, value, low in (("compress.rounds", c.rounds, 1),
                            ("compress.epochs_per_round", c.epochs_per_round, 1),
                            ("compress.curvature_batches", c.curvature_batches, 1),
                            ("compress.finetune_epochs", c.finetune_epochs, 0),
                            ("train.baseline_epochs", config.train.baseline_epochs, 0),
                            ("input.batch_size", config.input.batch_size, 1),
                            ("checkpoint_every_steps", config.get("checkpoint_every_steps", 0),
                             0),
                            ("stop_after_steps", config.get("stop_after_steps", 0), 0)):
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      raise ValueError(f"config.{field}: expected an integer >= {low}, got {value!r}")
  ramp = c.get("lambda_ramp", "constant")
  if ramp not in LAMBDA_RAMPS:
    raise ValueError(f"config.compress.lambda_ramp: expected one of {LAMBDA_RAMPS}, got "
                     f"{ramp!r}")
  schedule = config.train.get("schedule", "constant")
  if schedule not in SCHEDULES:
    raise ValueError(f"config.train.schedule: expected one of {SCHEDULES}, got {schedule!r}")
  if config.train.optimizer not in ("sgd", "adam"):
    raise ValueError(f"config.train.optimizer: expected 'sgd' or 'adam', got "
                     f"{config.train.optimizer!r}")
  if not c.lambda_ > 0:
    raise ValueError(f"config.compress.lambda_: expected a number > 0, got {c.lambda_!r}")
  if c.zero_curvature not in ZERO_CURVATURE:
    raise ValueError(f"config.compress.zero_curvature: expected one of {ZERO_CURVATURE}, "
                     f"got {c.zero_curvature!r}")
  if c.method not in METHODS:
    raise ValueError(f"config.compress.method: expected one of {METHODS}, got {c.method!r}")
  if c.method != "bayes" and not c.target_architecture:
    raise ValueError(f"config.compress.target_architecture: method {c.method!r} needs the "
                     f"architecture to prune to (e.g. a bayes run's architecture_after)")
  if c.prune_rule not in groups.PRUNE_RULES:
    raise ValueError(f"config.compress.prune_rule: expected one of {groups.PRUNE_RULES}, got "
                     f"{c.prune_rule!r}")
  if c.get("baseline_checkpoint", ""):
    _check_baseline_dir(c.baseline_checkpoint)
  distill = c.get("distill", 0.0)
  if not 0 <= distill < 1:
    raise ValueError(f"config.compress.distill: expected a weight in [0, 1), got {distill!r}")
  if distill > 0 and config.train.baseline_epochs < 1 and not c.get("baseline_checkpoint"):
    raise ValueError("config.compress.distill: the teacher is the dense baseline, so "
                     "train.baseline_epochs must be >= 1")
  if not c.get("distill_temperature", DISTILL_TEMPERATURE) > 0:
    raise ValueError(f"config.compress.distill_temperature: expected a number > 0, got "
                     f"{c.distill_temperature!r}")
  if c.curvature_mode not in ("hessian", "ggn"):
    raise ValueError(f"config.compress.curvature_mode: expected 'hessian' or 'ggn', got "
                     f"{c.curvature_mode!r}")


def lr_scale(step, total):
  """The cosine factor of step(s) `step` of `total` (1 at the start, → 0 at the end)."""
  return optax.cosine_decay_schedule(1.0, max(total, 1))(step)


def _images(batch, input_config):
  return data_lib.preprocess(batch, tuple(input_config.mean), tuple(input_config.std))


def distillation_loss(logits, teacher_logits, temperature):
  """Knowledge distillation (Hinton et al. 2015): the mean cross-entropy from the
  teacher's softened outputs softmax(t/T) to the student's softmax(z/T), times T² so
  that its gradient, T·(softmax(z/T) − softmax(t/T)) per example, keeps the scale of
  the hard-label loss as T changes."""
  soft = jax.nn.softmax(teacher_logits / temperature)
  return temperature ** 2 * jnp.mean(optax.softmax_cross_entropy(logits / temperature, soft))


def _make_steps(model, config, kinds):
  # SGD by default: Adam rescales every coordinate's step, so the group penalty's
  # pull on weights the data barely move becomes as strong as any data gradient.
  if config.train.optimizer == "adam":
    optimizer = optax.adam(config.train.learning_rate)
  else:
    optimizer = optax.sgd(config.train.learning_rate, momentum=config.train.momentum)
  lambdas = layer_lambdas(config, kinds)

  # Steps take the uint8 batch: normalisation runs inside the compiled step.
  # `state`: the model's other collections (batch statistics), {} for LeNets.
  temperature = float(config.compress.get("distill_temperature", DISTILL_TEMPERATURE))

  def forward(params, state, images):
    x = _images(images, config.input)
    if state:
      return model.apply({"params": params, **state}, x, train=True, mutable=list(state))
    return model.apply({"params": params}, x, train=True), state

  def loss_fn(params, state, images, labels):
    logits, new_state = forward(params, state, images)
    return nn.softmax_cross_entropy(logits, labels), new_state

  def penalty(params, states):
    return sum(groups.penalty(params[name]["kernel"], states[name], lambdas[name])
               for name in kinds)

  @jax.jit
  def train_step(params, state, opt_state, images, labels, states, masks, use_penalty,
                 rate_scale=1.0, teacher=None, distill=0.0):
    def objective(p):
      logits, new_state = forward(p, state, images)
      data = nn.softmax_cross_entropy(logits, labels)
      fit = data
      if teacher is not None:  # fine-tuning with `compress.distill` > 0
        fit = (1 - distill) * data + distill * distillation_loss(logits, teacher, temperature)
      return fit + use_penalty * penalty(p, states), (data, new_state)
    (_, (data, state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    # Scaling the final update scales the learning rate (SGD with momentum, Adam).
    updates = jax.tree_util.tree_map(lambda u: u * rate_scale, updates)
    params = jax.tree_util.tree_map(lambda p, u, m: (p + u) * m, params, updates, masks)
    return params, state, opt_state, data

  @jax.jit
  def curvature_step(params, state, images, labels):
    # Batch statistics of this batch, as in training; the running averages stay.
    _, _, curvature = value_grad_curvature(lambda p: loss_fn(p, state, images, labels)[0],
                                           params, mode=config.compress.curvature_mode)
    return curvature

  @jax.jit
  def eval_step(params, state, images, labels):
    logits = model.apply({"params": params, **state}, _images(images, config.input),
                         train=False)
    return jnp.sum(jnp.argmax(logits, -1) == labels)

  return optimizer, train_step, curvature_step, eval_step


def test_error(eval_step, params, state, test, batch_size=1000):
  correct = 0
  for start in range(0, len(test), batch_size):
    correct += int(eval_step(params, state, test.images[start:start + batch_size],
                             test.labels[start:start + batch_size]))
  return 100.0 * (1 - correct / len(test))


def _check_baseline_dir(path):
  if not os.path.isdir(path):
    raise ValueError(f"config.compress.baseline_checkpoint: no checkpoint directory {path} "
                     f"(a compression run writes its dense baseline to WORKDIR/baseline)")


def save_baseline(path, params, state, opt_state, epochs):
  """The trained dense baseline with its optimizer state and epoch count (orbax), so
  that another run (`compress.baseline_checkpoint`) continues exactly from it."""
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.abspath(path), {"params": params, "state": state,
                                            "opt_state": opt_state,
                                            "epochs": np.asarray(epochs, np.int32)}, force=True)
  checkpointer.wait_until_finished()


def load_baseline(path, params, state, opt_state):
  """(params, state, opt_state, epochs) of `save_baseline`'s checkpoint at `path`;
  the given trees are the structure expected (one-line error if it differs)."""
  field = "config.compress.baseline_checkpoint"
  _check_baseline_dir(path)
  path = os.path.abspath(path)
  target = {"params": params, "state": state, "opt_state": opt_state,
            "epochs": np.asarray(0, np.int32)}
  try:
    restored = ocp.StandardCheckpointer().restore(
        path, jax.tree_util.tree_map(np.asarray, target))
  except Exception as err:  # orbax raises several types for a foreign tree
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise ValueError(f"{field}: {path} is not a dense baseline of this model and optimizer "
                     f"({first[:200]})") from None
  for got, want in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(target)):
    if np.shape(got) != np.shape(want):
      raise ValueError(f"{field}: {path} holds arrays of shape {np.shape(got)} where this "
                       f"model has {np.shape(want)}")
  restored = jax.tree_util.tree_map(jnp.asarray, restored)
  return (restored["params"], restored["state"], restored["opt_state"],
          int(restored["epochs"]))


def logits_of(model, params, state, images, input_config, batch_size=1000):
  """The model's eval-mode logits on `images` (uint8 [N, ...]) as float32 [N, K]."""
  apply = jax.jit(lambda p, s, x: model.apply({"params": p, **s}, _images(x, input_config),
                                              train=False))
  return np.concatenate([np.asarray(apply(params, state, images[start:start + batch_size]),
                                    np.float32)
                         for start in range(0, len(images), batch_size)])


def macs_per_example(model, variables, image_shape):
  """Multiply-accumulates per example of the dense and conv layers: each kernel's
  entries times its output positions (shapes from an abstract evaluation)."""
  x = jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32)
  _, state = jax.eval_shape(
      lambda v, x_: model.apply(v, x_, train=False, capture_intermediates=True,
                                mutable=["intermediates"]), variables, x)
  total = 0
  for name, entry in variables["params"].items():
    if "kernel" not in entry:
      continue
    out_shape = state["intermediates"][name]["__call__"][0].shape
    positions = int(np.prod(out_shape[1:-1])) if len(out_shape) == 4 else 1
    total += positions * int(np.prod(np.shape(entry["kernel"])))
  return total


def run_compress(config, workdir: str, log=_log):
  validate(config)
  model = models.make(config.model)
  topology = models.topology(model)
  layers = topology.layers
  kinds = layer_groups(config, layers)
  for name in config.compress.get("layer_lambda", {}) or {}:
    if name not in [layer.name for layer in layers]:
      raise ValueError(f"config.compress.layer_lambda.{name}: no such layer (layers: "
                       f"{', '.join(layer.name for layer in layers)})")
  splits = data_lib.load_splits(dict(config.data))
  train, test = (splits[name] for name in config.data.splits)
  train = data_lib.take_examples(train, config.input.get("train_examples", 0))
  test = data_lib.take_examples(test, config.input.get("test_examples", 0))
  batch_size = config.input.batch_size
  steps = data_lib.steps_per_epoch(len(train), batch_size)
  if steps < 1:
    raise ValueError(f"config.input.batch_size: {batch_size} is larger than the {len(train)} "
                     f"training examples")
  start_time = time.perf_counter()
  key = jax.random.PRNGKey(config.seed)
  variables = model.init(key, _images(train.images[:1], config.input))
  params = variables["params"]
  state = {name: value for name, value in variables.items() if name != "params"}
  optimizer, train_step, curvature_step, eval_step = _make_steps(model, config, kinds)
  opt_state = optimizer.init(params)
  like = (params, state, opt_state)  # the trees a saved dense baseline must match
  hint = "lower train.learning_rate or check the data"
  baseline_path = config.compress.get("baseline_checkpoint", "")
  baseline = None  # (params, state) of the dense baseline where this launch has them
  baseline_epochs = 0
  if baseline_path:
    params, state, opt_state, baseline_epochs = load_baseline(baseline_path, *like)
    log(f"dense baseline: restored from {baseline_path} ({baseline_epochs} epochs)")
    baseline = (params, state)
  # Created only now (with the loop's WORKDIR/checkpoints), so that a foreign
  # checkpoint leaves nothing behind.
  os.makedirs(workdir, exist_ok=True)
  run = Run(workdir, CompressState(
      params=params, model_state=state, opt_state=opt_state,
      masks=jax.tree_util.tree_map(jnp.ones_like, params),
      priors={name: groups.init_state(params[name]["kernel"].shape, kinds[name])
              for name in kinds},
      kernel_masks={layer.name: jnp.ones(params[layer.name]["kernel"].shape, bool)
                    for layer in layers},
      losses=jnp.zeros(steps, jnp.float32)),
            checkpoint_every_steps=config.get("checkpoint_every_steps", 0),
            stop_after_steps=config.get("stop_after_steps", 0), hint=hint, log=log)
  try:
    return _compress(config, workdir, log, run, model, topology, kinds, train, test, steps,
                     (train_step, curvature_step, eval_step), like, baseline,
                     baseline_path, baseline_epochs, start_time)
  finally:
    run.close()


def _compress(config, workdir, log, run, model, topology, kinds, train, test, steps,
              step_fns, like, baseline, baseline_path, baseline_epochs, start_time):
  """run_compress's phases on `run` (each skipped where a relaunch finds it done)."""
  train_step, curvature_step, eval_step = step_fns
  layers = topology.layers
  batch_size = config.input.batch_size

  def epoch_line(phase, epoch):
    losses = jax.device_get(run.state.losses)
    return f"{phase}: epoch {epoch + 1}, loss {float(np.mean(losses)):.4f}"

  def run_epochs(phase, count, first, use_penalty, decay=False, teacher=None, distill=0.0):
    """`count` epochs from global epoch `first` as `phase`, whose step i is batch
    i % steps of epoch i // steps; saves at the end of every epoch."""
    total = count * steps
    # The phase's factors, once: nothing per batch but an index.
    distill_weight = jnp.float32(distill)
    scales = (np.asarray(lr_scale(np.arange(total), total), np.float32) if decay
              else np.ones(total, np.float32))
    for i in range(run.step(phase), total):
      e, step = divmod(i, steps)
      index = data_lib.batch_indices(len(train), batch_size, seed=config.seed,
                                     epoch=first + e, step=step)
      extra = () if teacher is None else (jnp.asarray(teacher[index]), distill_weight)
      s = run.state
      params, state, opt_state, loss = train_step(
          s.params, s.model_state, s.opt_state, train.images[index], train.labels[index],
          s.priors, s.masks, jnp.float32(use_penalty), scales[i], *extra)
      run.state = s.replace(params=params, model_state=state, opt_state=opt_state,
                            losses=s.losses.at[step].set(loss))
      last = step == steps - 1
      try:
        run.advance(phase, {"loss": loss})
      except Interrupted:
        if last:  # saved, so checked: the epoch's line as without the stop
          log(epoch_line(phase, first + e))
        raise
      if last:
        run.check()  # before the epoch's log and any file written after it
        log(epoch_line(phase, first + e))
        if i + 1 < total and not (run.every and (i + 1) % run.every == 0):
          run.save()  # the phase's last epoch: `finish` saves

  def epoch_phase(phase, count, first, *args):
    """The global epoch count after `phase` (run unless done)."""
    if not run.finished(phase):
      run_epochs(phase, count, first, *args)
      run.finish(phase, epochs=first + count)
    return run.record(phase)["epochs"]

  def apply_kernel_masks(kernel_masks, params):
    unit, alive = topology.param_masks(kernel_masks, params)
    unit = {name: unit.get(name, jax.tree_util.tree_map(np.ones_like, entry))
            for name, entry in params.items()}
    masks = jax.tree_util.tree_map(lambda m: jnp.asarray(m, jnp.float32), unit)
    params = jax.tree_util.tree_map(lambda p, m: p * m, params, masks)
    return (params, masks, {layer.name: unit[layer.name]["kernel"] for layer in layers},
            alive)

  # "cosine": the baseline and the fine-tuning each decay the learning rate
  # to 0 over their own epochs; the penalised rounds run at the full rate.
  decay = config.train.get("schedule", "constant") == "cosine"
  image_shape = train.images.shape[1:]
  everything = {layer.name: np.ones(like[0][layer.name]["kernel"].shape, bool)
                for layer in layers}
  if not run.finished("baseline"):
    if baseline_path:
      epochs = baseline_epochs  # the checkpoint's, whatever the config says
    else:
      epochs = config.train.baseline_epochs
      run_epochs("baseline", epochs, 0, 0.0, decay)
      s = run.state
      save_baseline(os.path.join(workdir, "baseline"), s.params, s.model_state, s.opt_state,
                    epochs)
      baseline = (s.params, s.model_state)
    params, state = run.state.params, run.state.model_state
    arch_before = topology.architecture(topology.param_masks(everything, params)[1])
    run.finish("baseline", epochs=epochs, test_error=test_error(eval_step, params, state, test),
               params=int(sum(np.size(v) for v in jax.tree_util.tree_leaves(params))),
               flops=macs_per_example(model, {"params": params, **state}, image_shape),
               architecture=arch_before)
  before = run.record("baseline")
  epochs = before["epochs"]
  error_before, params_before = before["test_error"], before["params"]
  macs_before, arch_before = before["flops"], before["architecture"]
  log(f"dense baseline {arch_before}: test error {error_before:.2f}%, {params_before} "
      f"parameters, {macs_before} multiply-adds per example")
  distill = float(config.compress.get("distill", 0.0))
  # The dense baseline is the fine-tuning's teacher: its logits on every training
  # example, once (eval mode), so fine-tuning runs no second network. A relaunch
  # past the baseline reads it back from its checkpoint (the same arrays).
  teacher = None
  if distill > 0 and not run.finished("fine-tune"):
    if baseline is None:
      baseline = load_baseline(baseline_path or os.path.join(workdir, "baseline"), *like)[:2]
    teacher = logits_of(model, *baseline, train.images, config.input)
  lambdas = layer_lambdas(config, kinds)
  rounds = []
  method = config.compress.method
  for round_ in range(config.compress.rounds):
    # The penalty and the update use λ^l times the round's ramp factor.
    factor = ramp_factor(config.compress.get("lambda_ramp", "constant"), round_,
                         config.compress.rounds)
    epochs = epoch_phase(f"round {round_ + 1}", config.compress.epochs_per_round, epochs,
                         0.0 if method == "magnitude" else factor)
    if method != "bayes":
      continue
    update = f"update {round_ + 1}"
    if not run.finished(update):
      s = run.state
      params = s.params
      curvature = None
      for b in range(config.compress.curvature_batches):
        index = data_lib.batch_indices(len(train), batch_size, seed=config.seed + 1,
                                       epoch=round_, step=b % steps)
        c = curvature_step(params, s.model_state, train.images[index], train.labels[index])
        curvature = c if curvature is None else jax.tree_util.tree_map(jnp.add, curvature, c)
      curvature = jax.tree_util.tree_map(lambda h: h / config.compress.curvature_batches,
                                         curvature)
      run.watch.add(f"round {round_ + 1}: curvature", config.compress.curvature_batches - 1,
                    {"curvature": curvature})
      run.check()
      kernels = {name: params[name]["kernel"] for name in kinds}
      hs = {name: curvature[name]["kernel"] for name in kinds}
      round_lambdas = {name: value * factor for name, value in lambdas.items()}
      states, group_h = groups.tree_update_jit(kernels, hs, s.priors, round_lambdas,
                                               threshold=config.compress.prune_threshold,
                                               rule=config.compress.prune_rule)
      if config.compress.zero_curvature == "prune":
        states = {name: st.replace(keep={
            kind: keep & (group_h[name][kind] > config.compress.zero_tolerance
                          * round_lambdas[name]) for kind, keep in st.keep.items()})
                  for name, st in states.items()}
      kernel_masks = {layer.name: (np.asarray(groups.mask(params[layer.name]["kernel"].shape,
                                                         states[layer.name]))
                                   if layer.name in states else everything[layer.name])
                      for layer in layers}
      params, masks, unit, alive = apply_kernel_masks(kernel_masks, params)
      run.state = s.replace(params=params, masks=masks, priors=states, kernel_masks={
          name: jnp.asarray(m) for name, m in kernel_masks.items()})
      arch = topology.architecture(alive)
      kept = {name: int(np.sum(unit[name])) for name in unit}
      record = {"round": round_ + 1, "lambda_factor": factor, "architecture": arch,
                "kept_weights": kept, "removed_blocks": list(topology.removed(alive)),
                "test_error": test_error(eval_step, params, s.model_state, test)}
      log(f"round {round_ + 1}: {arch}, test error {record['test_error']:.2f}%, weights kept "
          + ", ".join(f"{k} {v}" for k, v in kept.items()))
      run.finish(update, **record)
    rounds.append(run.record(update))
  if method != "bayes" and not run.finished("select"):
    s = run.state
    counts = topology.parse(config.compress.target_architecture)
    kernel_masks = structure.select_by_norm(
        layers, {layer.name: s.params[layer.name]["kernel"] for layer in layers}, counts)
    params, masks, _, alive = apply_kernel_masks(kernel_masks, s.params)
    run.state = s.replace(params=params, masks=masks, kernel_masks={
        layer.name: jnp.asarray(kernel_masks[layer.name], bool) for layer in layers})
    log(f"{method}: kept the largest-norm units, {topology.architecture(alive)}")
    run.finish("select")
  epoch_phase("fine-tune", config.compress.finetune_epochs, epochs, 0.0, decay, teacher,
              distill)
  s = run.state
  params, state, masks = s.params, s.model_state, s.masks
  # The units the last update (or the baselines' cut) left, from its kernel masks.
  alive = topology.param_masks({name: np.asarray(m) for name, m in s.kernel_masks.items()},
                               params)[1]
  error_masked = test_error(eval_step, params, state, test)
  small, small_params, small_state, description = topology.compress(
      jax.device_get(params), jax.device_get(state), alive)
  small_variables = {"params": small_params, **small_state}
  path = os.path.abspath(os.path.join(workdir, "compressed"))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, small_variables, force=True)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(path, jax.tree_util.tree_map(np.asarray, small_variables))
  files.write_json(os.path.join(workdir, "compressed_model.json"), description)
  _, _, _, small_eval = _make_steps(small, config, {})
  restored_state = {k: v for k, v in restored.items() if k != "params"}
  error_after = test_error(small_eval, restored["params"], restored_state, test)
  macs_after = macs_per_example(small, restored, image_shape)
  params_after = int(sum(np.size(v) for v in jax.tree_util.tree_leaves(restored["params"])))
  table = _layer_table(layers, params, jax.device_get(masks), restored["params"])
  _write_table(workdir, table)
  _plot(workdir, table)
  summary = {
      "architecture_before": arch_before,
      "architecture_after": topology.architecture(alive),
      "removed_blocks": list(topology.removed(alive)),
      "params_before": params_before, "params_after": params_after,
      "nonzero_params_after": int(sum(row["nonzero"] for row in table)) + sum(
          int(np.size(v)) for n, entry in restored["params"].items() for k, v in entry.items()
          if k != "kernel"),
      "flops_before": macs_before, "flops_after": macs_after,
      "flops_convention": "multiply-accumulates per example",
      "flops_reduction": round(macs_before / max(macs_after, 1), 2),
      "test_error_before": round(error_before, 3), "test_error_after": round(error_after, 3),
      "test_error_masked": round(error_masked, 3),
      "layers": table, "rounds": rounds, "seconds": round(time.perf_counter() - start_time, 1),
      "device": jax.devices()[0].device_kind, "method": method,
      "baseline_checkpoint": baseline_path or None, "distill": distill,
  }
  files.write_json(os.path.join(workdir, "summary.json"), summary)
  return {k: v for k, v in summary.items() if k not in ("layers", "rounds")}


def _layer_table(layers, params, masks, small):
  rows = []
  for layer in layers:
    kernel = np.asarray(masks[layer.name]["kernel"])
    after = small[layer.name]["kernel"] if layer.name in small else np.zeros((0,))
    rows.append({"layer": layer.name, "shape_before": list(np.shape(params[layer.name]["kernel"])),
                 "shape_after": list(np.shape(after)),
                 "weights": int(kernel.size), "nonzero": int(np.sum(kernel)),
                 "kept_percent": round(100.0 * float(np.mean(kernel)), 2)})
  return rows


def _write_table(workdir, table):
  lines = ["| layer | kernel before | kernel after | weights kept |", "| --- | --- | --- | --- |"]
  for row in table:
    lines.append(f"| {row['layer']} | {'×'.join(map(str, row['shape_before']))} | "
                 f"{'×'.join(map(str, row['shape_after']))} | {row['nonzero']} of "
                 f"{row['weights']} ({row['kept_percent']}%) |")
  files.write_text(os.path.join(workdir, "layers.md"), "\n".join(lines) + "\n")


def _plot(workdir, table):
  fig = plots.figure((5, 3))
  ax = fig.subplots()
  ax.bar([row["layer"] for row in table], [row["kept_percent"] for row in table])
  ax.set_ylabel("weights kept (%)")
  ax.set_title("per-layer sparsity")
  fig.tight_layout()
  plots.save_png(fig, os.path.join(workdir, "sparsity.png"), dpi=100)
