"""The search objective (eqs. 16 and 21) and the jitted steps of one round.

L = E_D + λ_w Σ_g ω_g ‖w_g‖₂ + λ ‖W‖²   (eq. 21; eq. 16 when every group has one
member). E_D is the mean softmax cross-entropy of the search network; the
curvature H is taken of E_D alone (SPEC §3 step 2).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import optax

from bayesnas_jax import nn
from bayesnas_jax.curvature import (exact_diagonal, sampled_ggn_from_vjp, softmax_ggn_diagonal,
                                    value_grad_curvature)
from bayesnas_jax.data import augment

# Where the curvature of the architecture scalars comes from (SPEC §7):
# "recursion" — the one-pass diagonal rule (SPEC §5; BN statistics held fixed);
# "exact" — the Hessian diagonal by Hessian-vector products; "ggn" — the exact
# Gauss–Newton diagonal by one Jacobian-vector product per scalar; "sampled" —
# an unbiased estimate of that Gauss–Newton diagonal from the gradient at labels
# drawn from the model's own prediction (`search.curvature_samples` backward
# passes per batch, whatever the number of scalars). "exact" and "ggn" cost one
# pass per scalar, CURVATURE_CHUNK scalars at a time; all three but "recursion"
# differentiate through batch norm's batch statistics.
CURVATURE_SOURCES = ("recursion", "exact", "ggn", "sampled")
CURVATURE_CHUNK = 32
_NORM_EPS = 1e-20  # keeps ∂‖w‖/∂w finite at w = 0 (pruned scalars)


def group_norm(w, grouping):
  """‖w_g‖₂ per group: over the stacked cells (axis 0) for grouping
  "cell_type"; |w| per scalar for "none"."""
  if grouping == "cell_type":
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=0) + _NORM_EPS)
  return jnp.sqrt(jnp.square(w) + _NORM_EPS)


def sparsity_penalty(arch, omega, grouping):
  """Σ_g ω_g ‖w_g‖₂ over every cell type, origin and op scalars."""
  total = 0.0
  for kind in arch:
    for part in ("origin", "ops"):
      total = total + jnp.sum(omega[kind][part] * group_norm(arch[kind][part], grouping))
  return total


def penalty_lambdas(search, steps_per_round):
  """The coefficient of ‖w_g‖ in the training loss, per part: {"origin", "ops"}.

  λ_w for the op scalars, `search.lambda_w_origin` (if > 0) for the origins.
  With `search.penalty_budget` B > 0 they are rescaled so that one round of
  plain SGD can move a scalar with ω = 1 by at most B through the penalty:
  coefficient = B / (learning_rate · steps_per_round) (times λ_origin/λ_w for
  the origins). Without it the budget is learning_rate · λ_w · steps_per_round
  (momentum can stretch either by up to 1/(1 − momentum)). The HARD update
  always uses λ_w (and λ_origin) as the noise variance of eq. 17.
  """
  lam = float(search.lambda_w)
  lambdas = {"origin": float(search.get("lambda_w_origin", 0.0)) or lam, "ops": lam}
  budget = float(search.get("penalty_budget", 0.0))
  if budget > 0:
    scale = budget / (float(search.learning_rate) * max(int(steps_per_round), 1) * lam)
    lambdas = {part: value * scale for part, value in lambdas.items()}
  return lambdas


def penalty_weights(omega, lambdas):
  """The `penalty` argument of the train step: (λ_ops, per-group weights), the
  penalty being λ_ops · Σ_g weight_g‖w_g‖ with weight = ω on op scalars and
  ω·λ_origin/λ_ops on origins."""
  ratio = {"origin": lambdas["origin"] / lambdas["ops"], "ops": 1.0}
  weights = {kind: {part: omega[kind][part] * ratio[part] for part in ("origin", "ops")}
             for kind in omega}
  return jnp.asarray(lambdas["ops"], jnp.float32), weights


def l2_penalty(weights):
  """‖W‖² of a weight tree or flat vector."""
  return sum(jnp.sum(jnp.square(w)) for w in jax.tree_util.tree_leaves(weights))


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _cast(tree, dtype):
  """Casts float leaves (plain or probed: a cast is a structural map)."""
  return jax.tree_util.tree_map(
      lambda x: nn.structural(lambda v: v.astype(dtype), x), tree, is_leaf=nn.is_probed)


def network_logits(space, weights, arch, images, masks, compute_dtype="float32"):
  """The float32 logits of the search network `space.apply` (a `SearchSpace`).
  With compute_dtype "bfloat16" the network runs in bf16 (weights, scalars,
  activations) while the logits, and so the loss, its gradients and the
  curvature, come back in float32."""
  if compute_dtype != "float32":
    dtype = COMPUTE_DTYPES[compute_dtype]
    weights, arch, images = _cast(weights, dtype), _cast(arch, dtype), images.astype(dtype)
  logits = space.apply(weights, arch, images, masks)
  return nn.structural(lambda v: v.astype(jnp.float32), logits)


def data_loss(space, weights, arch, images, labels, masks, compute_dtype="float32"):
  """E_D: mean cross-entropy of the search network; returns (loss, logits)."""
  logits = network_logits(space, weights, arch, images, masks, compute_dtype)
  loss = nn.softmax_cross_entropy(logits, labels)
  return loss, nn.value_of(logits)


def make_optimizer(config):
  """SGD with momentum (the paper's) or Adam, after clipping the global gradient
  norm at `grad_clip` (5, as in DARTS; 0 turns it off)."""
  clip = [optax.clip_by_global_norm(config.grad_clip)] if config.grad_clip else []
  if config.optimizer == "sgd":
    return optax.chain(*clip, optax.sgd(config.learning_rate,
                                        momentum=config.momentum or None))
  if config.optimizer == "adam":
    return optax.chain(*clip, optax.adam(config.learning_rate))
  raise ValueError(f"config.search.optimizer: expected 'sgd' or 'adam', got "
                   f"{config.optimizer!r}")


def prepare_images(images, key, input_config, train):
  """uint8 batch → augmented (if train) float images, on device; resized to
  `input_config.image_size` when that is set and differs."""
  if train:
    images = augment.augment_batch(
        key, images, crop_padding=input_config.crop_padding, flip=input_config.flip,
        cutout_length=input_config.cutout_length)
  else:
    images = augment.preprocess(images)
  size = input_config.get("image_size", 0)
  if size and size != images.shape[1]:
    images = jax.image.resize(images, (images.shape[0], size, size, images.shape[3]),
                              "linear", antialias=True)
  return images


def _accuracy(logits, labels):
  return jnp.mean(jnp.argmax(logits, -1) == labels)


_STEP_CACHE = {}


def make_steps(config, space):
  """The jitted steps for `config` and its `SearchSpace` (made from
  `config.space`), built once per distinct (space, search, input) settings so
  that later runs in one process reuse compiled code."""
  key = json.dumps({k: config[k].to_dict() for k in ("space", "search", "input")},
                   sort_keys=True, default=str)
  if key not in _STEP_CACHE:
    _STEP_CACHE[key] = _build_steps(config, space)
  return _STEP_CACHE[key]


def _build_steps(config, space):
  """Builds the jitted steps for `config` (input and search fields) on `space`.

  train_step(params, opt_state, batch, key, penalty, masks, arch_scale) does one
  SGD step on eq. 21 (`penalty` = (λ, per-group ω): see `penalty_weights`) and returns (params, opt_state, metrics, curvature), the
  curvature of E_D w.r.t. the architecture scalars when
  `search.curvature_pass == "during"` (else None); arch_scale = 0 freezes the architecture scalars (weights
  warm-up, retraining a derived cell). curvature_step(params, batch, masks, key)
  returns (E_D, H of E_D w.r.t. the architecture scalars; `key` draws the labels
  of the "sampled" source). eval_step returns
  (loss, accuracy).
  """
  search, inputs = config.search, config.input
  optimizer = make_optimizer(search)

  def objective(params, images, labels, penalty, masks):
    loss, logits = data_loss(space, params["weights"], params["arch"], images, labels, masks,
                             search.compute_dtype)
    return loss + penalties(params, penalty), (loss, _accuracy(logits, labels))

  def penalties(params, penalty):
    coefficient, weights = penalty
    return (coefficient * sparsity_penalty(params["arch"], weights, search.grouping)
            + search.weight_decay * l2_penalty(params["weights"]))

  def apply_update(params, opt_state, grads, masks, arch_scale):
    grads = {"weights": grads["weights"],
             "arch": jax.tree_util.tree_map(lambda g: g * arch_scale, grads["arch"])}
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    # Pruned scalars stay exactly 0.
    params["arch"] = jax.tree_util.tree_map(lambda w, m: w * m, params["arch"], masks)
    return params, opt_state

  source = search.get("curvature_source", "recursion")
  if source not in CURVATURE_SOURCES:
    raise ValueError(f"config.search.curvature_source: expected one of {CURVATURE_SOURCES}, "
                     f"got {source!r}")
  samples = int(search.get("curvature_samples", 1))

  if search.curvature_pass == "during" and source == "sampled":
    # One forward pass; the backward pass at the true labels gives the gradient
    # of eq. 21, and `samples` more at labels drawn from the model give the
    # sampled Gauss–Newton diagonal of E_D w.r.t. the architecture scalars (the
    # weights' part of those passes is never used, so XLA drops it).
    @jax.jit
    def train_step(params, opt_state, batch, key, penalty, masks, arch_scale):
      # The same augmentation as the other train steps: the weights follow the
      # same path whichever source measures the curvature.
      images = prepare_images(batch["image"], key, inputs, train=True)
      label_key = jax.random.fold_in(key, 1)
      logits, vjp_fn = jax.vjp(
          lambda p: network_logits(space, p["weights"], p["arch"], images, masks,
                                   search.compute_dtype), params)
      loss, dlogits = jax.value_and_grad(nn.softmax_cross_entropy)(logits, batch["label"])
      (grads,) = vjp_fn(dlogits)
      curvature = sampled_ggn_from_vjp(lambda u: vjp_fn(u)[0]["arch"], logits, label_key,
                                       samples)
      penalty_grads = jax.grad(penalties)(params, penalty)
      grads = jax.tree_util.tree_map(jnp.add, grads, penalty_grads)
      metrics = {"loss": loss, "accuracy": _accuracy(logits, batch["label"]),
                 "grad_norm": optax.tree.norm(grads)}
      params, opt_state = apply_update(params, opt_state, grads, masks, arch_scale)
      return params, opt_state, metrics, curvature
  elif search.curvature_pass == "during":
    # One pass gives the gradient of eq. 21 and the curvature of E_D w.r.t. the
    # architecture scalars: the curvature is accumulated while training.
    @jax.jit
    def train_step(params, opt_state, batch, key, penalty, masks, arch_scale):
      images = prepare_images(batch["image"], key, inputs, train=True)

      def loss_fn(p):
        return data_loss(space, p["weights"], p["arch"], images, batch["label"], masks,
                         search.compute_dtype)

      (loss, logits), grads, curvature = value_grad_curvature(
          loss_fn, params, mode=search.curvature_mode, has_aux=True,
          probe_mask={"weights": False, "arch": True})
      penalty_grads = jax.grad(penalties)(params, penalty)
      grads = jax.tree_util.tree_map(jnp.add, grads, penalty_grads)
      metrics = {"loss": loss, "accuracy": _accuracy(logits, batch["label"]),
                 "grad_norm": optax.tree.norm(grads)}
      params, opt_state = apply_update(params, opt_state, grads, masks, arch_scale)
      return params, opt_state, metrics, curvature["arch"]
  else:
    @jax.jit
    def train_step(params, opt_state, batch, key, penalty, masks, arch_scale):
      images = prepare_images(batch["image"], key, inputs, train=True)
      grads, (loss, accuracy) = jax.grad(objective, has_aux=True)(
          params, images, batch["label"], penalty, masks)
      metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": optax.tree.norm(grads)}
      params, opt_state = apply_update(params, opt_state, grads, masks, arch_scale)
      return params, opt_state, metrics, None

  @jax.jit
  def curvature_step(params, batch, masks, key):
    images = prepare_images(batch["image"], None, inputs, train=False)

    def loss_of_arch(arch):
      return data_loss(space, params["weights"], arch, images, batch["label"], masks,
                       search.compute_dtype)[0]

    if source == "recursion":
      loss, _, curvature = value_grad_curvature(loss_of_arch, params["arch"],
                                                mode=search.curvature_mode)
      return loss, curvature
    logits_of_arch = lambda arch: network_logits(space, params["weights"], arch, images,
                                                 masks, search.compute_dtype)
    if source == "sampled":
      logits, vjp_fn = jax.vjp(logits_of_arch, params["arch"])
      loss = nn.softmax_cross_entropy(logits, batch["label"])
      return loss, sampled_ggn_from_vjp(lambda u: vjp_fn(u)[0], logits, key, samples)
    loss = loss_of_arch(params["arch"])
    if source == "exact":
      return loss, exact_diagonal(loss_of_arch, params["arch"], chunk=CURVATURE_CHUNK)
    return loss, softmax_ggn_diagonal(logits_of_arch, params["arch"], chunk=CURVATURE_CHUNK)

  @jax.jit
  def eval_step(params, batch, masks):
    images = prepare_images(batch["image"], None, inputs, train=False)
    loss, logits = data_loss(space, params["weights"], params["arch"], images, batch["label"],
                             masks, search.compute_dtype)
    return loss, _accuracy(logits, batch["label"])

  return optimizer, train_step, curvature_step, eval_step
