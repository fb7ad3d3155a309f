"""Training a derived architecture from scratch, with its test accuracy (SPEC §4).

The DARTS evaluation recipe, every number a config field:
* loss = CE(logits) + aux_weight · CE(aux_logits) (0.4), CE optionally label-smoothed:
  (1 − ε)·(−log p_y) + ε·mean_k(−log p_k);
* SGD with momentum 0.9 on the gradient clipped to global norm 5, plus weight decay
  λ·W added after clipping (PyTorch's SGD after clip_grad_norm_);
* learning rate constant within epoch e of E: cosine 0.5·lr·(1 + cos(πe/E)) (CIFAR),
  or exponential lr·γ^e (ImageNet, γ = 0.97);
* drop-path probability p·e/E in epoch e (p = 0.2), on non-identity edges;
* augmentation on device: random crop (padding 4, or a crop to model.image_size
  from larger stored images), flip, normalisation, cutout 16.

Every batch and PRNG key is a pure function of (seed, epoch, step) and the state is
checkpointed with orbax after every epoch (and every `checkpoint_every_steps`), so a
relaunch on the same workdir resumes and ends with the result of an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnas_jax import data as data_lib
from bayesnas_jax import files
from bayesnas_jax.checkpoints import Interrupted  # pylint: disable=unused-import (train.Interrupted)
from bayesnas_jax.loop import Run
from bayesnas_jax.evaluation import counting, darts_network, feeds, models
from bayesnas_jax.metrics import MetricWriter, Progress
from bayesnas_jax.nn.conv import IMPLS
from bayesnas_jax.parallel import data_parallel, global_batch

SCHEDULES = ("cosine", "exponential")


# ----------------------------------------------------------------------------
# Config checks.


def _field(config, path):
  value = config
  for part in path.split("."):
    value = value[part]
  return value


def _need(condition, path, expected, value):
  if not condition:
    raise ValueError(f"config.{path}: expected {expected}, got {value!r}")


def validate(config):
  """Raises a one-line ValueError naming the first bad field of an evaluation config."""
  _need(config.mode in ("train", "summary"), "mode", "'train' or 'summary'", config.mode)
  _need(isinstance(config.genotype, str) and config.genotype, "genotype",
        "the path of a genotype.json or of a DARTS Genotype(...) literal", config.genotype)
  layers = "model.layers" if config.model.get("name", "darts") == "darts" else (
      "model.cells_per_stage")
  for path, low in (("input.batch_size", 1), ("model.channels", 2), (layers, 1),
                    ("model.num_classes", 1), ("model.image_size", 1),
                    ("train.epochs", 1), ("train.eval_every_epochs", 1),
                    ("log_every_steps", 1), ("input.crop_padding", 0),
                    ("input.cutout_length", 0), ("checkpoint_every_steps", 0),
                    ("input.train_examples", 0), ("input.test_examples", 0),
                    ("input.resize", 0),
                    ("stop_after_steps", 0)):
    value = _field(config, path)
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= low, path,
          f"an integer >= {low}", value)
  for path, low, high in (("train.learning_rate", 0, math.inf), ("train.momentum", 0, 1),
                          ("train.weight_decay", 0, math.inf), ("train.grad_clip", 0, math.inf),
                          ("train.auxiliary_weight", 0, math.inf),
                          ("train.drop_path_prob", 0, 0.99), ("train.label_smoothing", 0, 0.99),
                          ("train.lr_decay", 0, 1)):
    value = _field(config, path)
    _need(isinstance(value, (int, float)) and not isinstance(value, bool)
          and low <= value <= high, path, f"a number in [{low}, {high}]", value)
  _need(config.train.learning_rate > 0, "train.learning_rate", "a number > 0",
        config.train.learning_rate)
  _need(config.model.channels % 2 == 0, "model.channels", "an even number",
        config.model.channels)
  net = models.get(config.model)
  _need(net.name != "darts" or config.model.stem in darts_network.STEMS, "model.stem",
        f"one of {darts_network.STEMS}", config.model.get("stem"))
  _need(config.train.lr_schedule in SCHEDULES, "train.lr_schedule", f"one of {SCHEDULES}",
        config.train.lr_schedule)
  _need(config.model.get("depthwise_impl", "auto") in IMPLS, "model.depthwise_impl",
        f"one of {IMPLS}", config.model.get("depthwise_impl"))
  _need(len(config.data.splits) == 2, "data.splits", "(train split, test split)",
        config.data.splits)
  _need(config.input.get("pipeline", "memory") in feeds.PIPELINES, "input.pipeline",
        f"one of {feeds.PIPELINES}", config.input.get("pipeline"))
  workers = config.input.get("workers", 0)
  _need(isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0,
        "input.workers", "an integer >= 0", workers)


def load_genotype(config):
  """The checked genotype named by config.genotype, in the form of the network
  of config.model.name (one-line errors)."""
  try:
    return models.get(config.model).load(os.path.expanduser(config.genotype))
  except ValueError as err:
    raise ValueError(f"config.genotype: {err}") from None


# ----------------------------------------------------------------------------
# Objective, schedule, steps.


def learning_rate(train_config, epoch):
  """The learning rate of (0-based) `epoch`: cosine or exponential decay."""
  lr, epoch = train_config.learning_rate, jnp.asarray(epoch, jnp.float32)
  if train_config.lr_schedule == "cosine":
    return 0.5 * lr * (1 + jnp.cos(jnp.float32(math.pi) * epoch / train_config.epochs))
  return lr * jnp.float32(train_config.lr_decay) ** epoch


def drop_path_prob(train_config, epoch):
  return train_config.drop_path_prob * epoch / train_config.epochs


def cross_entropy(logits, labels, smoothing=0.0):
  """Per-example (label-smoothed) softmax cross-entropy."""
  log_p = jax.nn.log_softmax(logits, axis=-1)
  picked = -jnp.take_along_axis(log_p, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  if not smoothing:
    return picked
  return (1 - smoothing) * picked - smoothing * jnp.mean(log_p, axis=-1)


def make_optimizer(train_config, steps_per_epoch):
  def schedule(count):
    return learning_rate(train_config, count // steps_per_epoch)

  clip = [optax.clip_by_global_norm(train_config.grad_clip)] if train_config.grad_clip else []
  return optax.chain(*clip, optax.add_decayed_weights(train_config.weight_decay),
                     optax.sgd(schedule, momentum=train_config.momentum or None,
                               nesterov=bool(train_config.get("nesterov", False))))


def prepare_images(images, key, input_config, image_size, train):
  """uint8 batch → float images on device: a crop to image_size (random in
  training, central at test) when the stored images are larger, then (training)
  padded random crop, flip and cutout, and normalisation."""
  n, height, width, _ = images.shape
  if (height, width) != (image_size, image_size):
    if train:
      key, k_y, k_x = jax.random.split(key, 3)
      tops = jax.random.randint(k_y, (n,), 0, height - image_size + 1)
      lefts = jax.random.randint(k_x, (n,), 0, width - image_size + 1)
    else:
      tops = jnp.full((n,), (height - image_size) // 2)
      lefts = jnp.full((n,), (width - image_size) // 2)
    images = jax.vmap(lambda im, t, l: jax.lax.dynamic_slice(
        im, (t, l, 0), (image_size, image_size, im.shape[-1])))(images, tops, lefts)
  mean, std = tuple(input_config.mean), tuple(input_config.std)
  if not train:
    return data_lib.preprocess(images, mean, std)
  return data_lib.augment_batch(key, images, crop_padding=input_config.crop_padding,
                                flip=input_config.flip,
                                cutout_length=input_config.cutout_length, mean=mean, std=std)


_STEP_CACHE = {}


def make_steps(config, genotype, steps_per_epoch):
  """(optimizer, train_step, eval_step), jitted once per distinct settings."""
  key = json.dumps([genotype, steps_per_epoch] + [config[k].to_dict() for k in
                                                  ("model", "train", "input")],
                   sort_keys=True, default=str)
  if key not in _STEP_CACHE:
    _STEP_CACHE[key] = _build_steps(config, genotype, steps_per_epoch)
  return _STEP_CACHE[key]


@flax.struct.dataclass
class TrainState:
  """What a cell's training carries between steps (and checkpoints): the
  network's parameters and batch statistics, the optimizer state, and the
  epoch's running (Σ loss, Σ correct, n) over its training batches."""
  params: Any
  batch_stats: Any
  opt_state: Any
  train_sums: jax.Array


def _build_steps(config, genotype, steps_per_epoch):
  model, train_config, input_config = config.model.to_dict(), config.train, config.input
  net = models.get(config.model)
  optimizer = make_optimizer(train_config, steps_per_epoch)
  smoothing, aux_weight = train_config.label_smoothing, train_config.auxiliary_weight

  @jax.jit
  def train_step(state, batch, key, drop_prob):
    """One SGD step; adds (Σ loss, Σ correct, n) to `state.train_sums`."""
    k_images, k_drop = jax.random.split(key)
    images = prepare_images(batch["image"], k_images, input_config, model["image_size"], True)
    labels = batch["label"]

    def loss_fn(params):
      logits, aux, stats = net.apply(params, state.batch_stats, images, genotype,
                                     model, train=True, key=k_drop,
                                     drop_path_prob=drop_prob)
      loss = jnp.mean(cross_entropy(logits, labels, smoothing))
      total = loss
      if aux is not None and aux_weight:
        total = total + aux_weight * jnp.mean(cross_entropy(aux, labels, smoothing))
      return total, (loss, logits, stats)

    grads, (loss, logits, stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    correct = jnp.sum(jnp.argmax(logits, -1) == labels)
    n = labels.shape[0]
    sums = state.train_sums + jnp.stack([loss * n, correct, n]).astype(jnp.float32)
    new_state = TrainState(params=optax.apply_updates(state.params, updates),
                           batch_stats=stats, opt_state=opt_state, train_sums=sums)
    return new_state, {"loss": loss, "accuracy": correct / n}

  @jax.jit
  def eval_step(params, batch_stats, images, labels, mask):
    """(Σ loss, Σ correct) over the examples where mask is True."""
    images = prepare_images(images, None, input_config, model["image_size"], False)
    logits, _, _ = net.apply(params, batch_stats, images, genotype, model, train=False)
    losses = cross_entropy(logits, labels)
    correct = jnp.argmax(logits, -1) == labels
    return jnp.stack([jnp.sum(jnp.where(mask, losses, 0)),
                      jnp.sum(jnp.where(mask, correct, 0))]).astype(jnp.float32)

  return optimizer, train_step, eval_step


def initial_state(config, genotype, key, optimizer):
  """Fresh training state, built by one jitted function (jitted once per settings)."""
  model = config.model.to_dict()
  net = models.get(config.model)
  cache_key = json.dumps(["init", genotype, model], sort_keys=True, default=str)
  if cache_key not in _STEP_CACHE:
    def build(key, optimizer):
      params, batch_stats = net.init(key, genotype, model)
      return TrainState(params=params, batch_stats=batch_stats,
                        opt_state=optimizer.init(params),
                        train_sums=jnp.zeros((3,), jnp.float32))
    _STEP_CACHE[cache_key] = jax.jit(build, static_argnums=1)
  return _STEP_CACHE[cache_key](key, optimizer)


def evaluate(eval_step, state, dataset, batch_size, sharding=None):
  """{"loss", "accuracy", "examples"} over the whole split (last batch padded);
  batches split over `sharding` when given."""
  n = len(dataset)
  sums = jnp.zeros((2,), jnp.float32)
  for start in range(0, n, batch_size):
    positions = np.arange(start, min(start + batch_size, n))
    valid = len(positions)
    positions = np.concatenate([positions, np.full(batch_size - valid, positions[0])])
    batch = {"image": dataset.images[positions], "label": dataset.labels[positions],
             "mask": np.arange(batch_size) < valid}
    if sharding is not None:
      batch = global_batch(batch, sharding)
    sums = sums + eval_step(state.params, state.batch_stats, batch["image"],
                            batch["label"], batch["mask"])
  loss_sum, correct = (float(v) for v in jax.device_get(sums))
  return {"loss": loss_sum / n, "accuracy": correct / n, "examples": n}


# ----------------------------------------------------------------------------
# Entry points.


def summarize(config, genotype=None):
  """{"params_M", "flops_M", "params", "flops"} of the evaluation network, without
  training: parameters without the auxiliary head, multiply-accumulates per
  model.image_size² image (counting.py)."""
  genotype = load_genotype(config) if genotype is None else genotype
  model = config.model.to_dict()
  net = models.get(config.model)
  params, _ = counting.abstract_network(genotype, model, net)
  count = counting.parameter_count(params, exclude_auxiliary=True)
  flops = counting.flops_per_image(genotype, model, net)
  return {"params_M": count / 1e6, "flops_M": flops / 1e6, "params": count, "flops": flops,
          "flops_convention": "multiply-accumulates per image at inference"}


def _load_data(config):
  splits = data_lib.load_splits(dict(config.data))
  train, test = (splits[name] for name in config.data.splits)
  train = data_lib.take_examples(train, config.input.get("train_examples", 0))
  test = data_lib.take_examples(test, config.input.get("test_examples", 0))
  if train.num_classes > config.model.num_classes:
    raise ValueError(f"config.model.num_classes: {config.model.num_classes} is fewer than "
                     f"the {train.num_classes} classes of the data")
  size = config.input.get("resize", 0)
  if size:
    train, test = _resized(train, size), _resized(test, size)
  height, width, channels = train.image_shape
  if min(height, width) < config.model.image_size or channels != config.model.in_channels:
    raise ValueError(f"config.model.image_size: the data's images are {height}×{width}×"
                     f"{channels}; image_size must be at most {min(height, width)} and "
                     f"in_channels {channels}")
  return train, test


@jax.jit
def _resize_batch(images, size_like):
  shape = (images.shape[0],) + size_like.shape + (images.shape[3],)
  images = jax.image.resize(images.astype(jnp.float32), shape, "linear", antialias=True)
  return jnp.clip(jnp.round(images), 0, 255).astype(jnp.uint8)


def _resized(dataset, size, chunk=2048):
  """The dataset with its uint8 images resized to size × size once, at load time
  (`input.resize`), in chunks on the default device."""
  if dataset.image_shape[:2] == (size, size):
    return dataset
  like = jnp.zeros((size, size), jnp.uint8)
  images = np.concatenate([np.asarray(_resize_batch(dataset.images[i:i + chunk], like))
                           for i in range(0, len(dataset), chunk)])
  return data_lib.Dataset(images, dataset.labels, dataset.class_names, dataset.source)


def train_and_evaluate(config, workdir: str, log=print) -> dict:
  """Trains (or resumes) the network of config.genotype in `workdir`; returns the
  summary also written to summary.json."""
  validate(config)
  genotype = load_genotype(config)
  batch_size, epochs = config.input.batch_size, config.train.epochs
  feed = None
  if config.input.get("pipeline", "memory") == "grain":
    feed = feeds.GrainFeed(config)
    steps, train_examples = feed.steps_per_epoch, feed.train_examples
  else:
    train, test = _load_data(config)
    steps, train_examples = data_lib.steps_per_epoch(len(train), batch_size), len(train)
  if steps < 1:
    raise ValueError(f"config.input.batch_size: {batch_size} is larger than the "
                     f"{train_examples} training examples")
  counts = summarize(config, genotype)
  batch_sharding, replicated = data_parallel(batch_size)
  os.makedirs(workdir, exist_ok=True)
  base_key = jax.random.PRNGKey(config.seed)
  optimizer, train_step, eval_step = make_steps(config, genotype, steps)
  state = initial_state(config, genotype, jax.random.fold_in(base_key, 0), optimizer)
  run = Run(workdir, state, checkpoint_every_steps=config.checkpoint_every_steps,
            stop_after_steps=config.get("stop_after_steps", 0),
            hint="lower train.learning_rate or check the data", log=log,
            position={"global_step": 0, "tests": []},
            data_iterator=feed.iterator if feed else None)
  # Replicated over the device mesh from the start (batches are split over it),
  # so that fresh, stepped and restored states share one compiled train step.
  run.state = jax.device_put(run.state, replicated)
  log(f"params {counts['params_M']:.3f}M (without auxiliary head), "
      f"{counts['flops_M']:.1f}M multiply-adds per image")
  writer = MetricWriter(workdir, tensorboard=config.tensorboard)
  position = run.position
  try:
    for epoch in range(epochs):
      phase = f"epoch {epoch + 1}/{epochs}"
      if run.finished(phase):
        continue
      lr = float(learning_rate(config.train, epoch))
      drop_prob = np.float32(drop_path_prob(config.train, epoch))
      progress = Progress(phase, steps, batch_size)
      for step in range(run.step(phase), steps):
        if feed is not None:
          batch = feed.next_train(batch_sharding)
        else:
          positions = data_lib.batch_indices(len(train), batch_size, seed=config.seed,
                                             epoch=epoch, step=step)
          batch = global_batch({"image": train.images[positions],
                                "label": train.labels[positions]}, batch_sharding)
        key = jax.random.fold_in(jax.random.fold_in(base_key, 1), position["global_step"])
        run.state, metrics = train_step(run.state, batch, key, drop_prob)
        run.watch.add(phase, step, {"loss": metrics["loss"]})
        position["global_step"] += 1
        if (step + 1) % config.log_every_steps == 0 or step + 1 == steps:
          run.check()  # before anything is logged
          metrics = jax.device_get(metrics)
          rate = progress.update(step + 1, metrics, force=True)
          writer.write(position["global_step"], "train", metrics, epoch=epoch,
                       images_per_s=rate)
        run.advance(phase)
      state = run.state
      loss_sum, correct, n = (float(v) for v in jax.device_get(state.train_sums))
      run.state = state.replace(train_sums=jax.device_put(jnp.zeros((3,), jnp.float32),
                                                          state.train_sums.sharding))
      record = {"train_loss": loss_sum / n, "train_accuracy": correct / n,
                "learning_rate": lr, "drop_path_prob": float(drop_prob)}
      if (epoch + 1) % config.train.eval_every_epochs == 0 or epoch + 1 == epochs:
        result = (feed.evaluate(eval_step, run.state, batch_sharding) if feed is not None
                  else evaluate(eval_step, run.state, test, batch_size, batch_sharding))
        position["tests"].append({"epoch": epoch + 1, **result})
        record.update(test_loss=result["loss"], test_accuracy=result["accuracy"])
        log(f"epoch {epoch + 1}/{epochs}: train loss {record['train_loss']:.4f}, "
            f"test accuracy {result['accuracy']:.4f}")
      writer.write(position["global_step"], "epoch", record, epoch=epoch + 1)
      run.finish(phase)
  finally:
    writer.close()
    run.close()
  position = {**position, "epoch": epochs}
  return _finish(config, workdir, position, counts, genotype)


def _finish(config, workdir, position, counts, genotype):
  tests = position["tests"]
  best = max(tests, key=lambda t: t["accuracy"])
  summary = {**counts, "final_test_accuracy": tests[-1]["accuracy"],
             "final_test_loss": tests[-1]["loss"], "best_test_accuracy": best["accuracy"],
             "best_epoch": best["epoch"], "test_examples": tests[-1]["examples"],
             "epochs": position["epoch"], "steps": position["global_step"],
             "train_seconds": position["seconds"], "device": jax.devices()[0].device_kind,
             "devices": jax.device_count(),
             "genotype_file": config.genotype,
             "genotype": models.get(config.model).genotype_dict(genotype)}
  files.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary
