"""The recurrent language model of the cell search and of a derived cell's
training (RNN thesis (R) ch. 3–5; the cell in `spaces.rnn`), and its jitted steps.

The network is DARTS's recurrent search model: embedding (tied with the
softmax), one recurrent cell of `space.num_nodes` nodes, variational dropout on
the embeddings (`dropout_input`), the cell input (`dropout_x`), the hidden
nodes (`dropout_hidden`) and the output (`dropout_output`), the state carried
from window to window of contiguous streams (`data.text`).
"""
from __future__ import annotations

import math
import sys
import types
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnas_jax import nn, value_grad_curvature
from bayesnas_jax.data import text
from bayesnas_jax.metrics import NonFiniteError
from bayesnas_jax.search.objective import sparsity_penalty
from bayesnas_jax.spaces import rnn
from bayesnas_jax.spaces.cell import masked_arch


_HINT = "lower train.learning_rate or search.arch_learning_rate, or check the data"


def _log(message):
  print(message, file=sys.stderr, flush=True)


@flax.struct.dataclass
class LMState:
  """What the language-model runs carry between steps (and checkpoint): the
  weights (`init_params`), the architecture scalars, the weights' and the
  scalars' optimizer states, the dropout key and the hidden state carried from
  window to window. The search adds its HARD state (`prior`) and keep masks;
  a cell's training adds ASGD's averaged weights once averaging has begun
  (`average`, over `average_count` iterates). Fields a run does not use stay
  None, so each run's tree keeps one structure from start to end."""
  params: Any
  arch: Any
  opt_w: Any
  opt_a: Any
  key: jax.Array
  h: jax.Array
  prior: Any = None
  masks: Any = None
  average: Any = None
  average_count: Any = None


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
  masks = {}
  if key is not None and rates:
    keys = jax.random.split(key, 4)
    masks = {name: _mask(k, (inputs.shape[0], size), rates[name])
             for k, name in zip(keys, ("input", "x", "hidden", "output"))}
  logits, h_last = _forward(params, arch, inputs, h0, spec, space, masks, horizon)
  return nn.softmax_cross_entropy(logits, targets.T), nn.value_of(h_last)


def _forward(params, arch, inputs, h0, spec, space, masks, horizon=0):
  """Logits [T, B, V] of windows inputs [B, T] from state h0, and h_T."""
  x = nn.structural(lambda e: e[inputs.T], params["embedding"])            # [T, B, n]
  if masks.get("input") is not None:
    x = nn.scale(x, masks["input"][None])
  outputs, h_last = rnn.unroll(params["cell"], arch, x, h0, spec, norm=space.norm,
                               origin=space.origin, horizon=horizon,
                               x_mask=masks.get("x"), h_mask=masks.get("hidden"))
  if masks.get("output") is not None:
    outputs = nn.scale(outputs, masks["output"][None])
  decoder = nn.structural(lambda e: e.T, params["embedding"])
  return nn.dense(outputs, decoder, params["bias"]), h_last


def logits(params, arch, inputs, arch_masks, spec, space):
  """Next-token logits [B, T, V] of token windows inputs [B, T] from a zero
  state, without dropout; `arch_masks` (or None) switches scalars off. The
  recurrent space's `apply` (`spaces.rnn.make`)."""
  if arch_masks is not None:
    arch = _masked(arch, arch_masks)
  size = nn.value_of(params["embedding"]).shape[1]
  h0 = jnp.zeros((inputs.shape[0], size), nn.value_of(params["embedding"]).dtype)
  out, _ = _forward(params, arch, inputs, h0, spec, space, {})
  return nn.structural(lambda v: jnp.swapaxes(v, 0, 1), out)


def pair_fisher(params, arch, inputs, h0, spec, space, key, draws: int = 4):
  """The Gauss–Newton matrix of the mean cross-entropy per token w.r.t. the
  (edge, op) scalars, flattened to P = E·O, estimated from labels drawn from
  the model: returns (G [P, P], h_T).

  With u_t = p_t − e_ŷ_t for a label ŷ_t drawn from the prediction p_t, u_t has
  mean 0 and covariance Λ_t = diag p_t − p_t p_tᵀ, and the u_t are independent
  given the inputs (the inputs are the true tokens), so for sequence b the
  vector g_b = Σ_{t∈b} J_tᵀ u_t has E[g_b g_bᵀ] = Σ_{t∈b} J_tᵀ Λ_t J_t, and
  Σ_b g_b g_bᵀ / N (N tokens) is an unbiased estimate of the whole matrix
  (`curvature.sampled_ggn_from_vjp` gives its diagonal from the batch sum).
  One backward pass per sequence and draw, through the cell only (the decoder's
  part is the matrix product u·E). No dropout, no normalisation statistics
  across sequences assumed beyond what `space.norm` computes (with "batch" the
  cross-sequence terms are dropped: an approximation).
  """
  x = params["embedding"][inputs.T]                                          # [T, B, n]
  outputs, vjp_fn, h_last = _outputs_vjp(params, arch, x, h0, spec, space)
  logits = outputs @ params["embedding"].T + params["bias"]                # [T, B, V]
  probs = jax.nn.softmax(logits, axis=-1)
  labels = jax.random.categorical(key, logits, axis=-1, shape=(draws,) + logits.shape[:-1])
  u = probs[None] - jax.nn.one_hot(labels, logits.shape[-1], dtype=probs.dtype)
  cotangent = u @ params["embedding"]                                      # [D, T, B, n]
  batch = inputs.shape[0]
  rows = jnp.eye(batch, dtype=cotangent.dtype)

  def one(c, row):
    return vjp_fn(c * row[None, :, None])[0]["ops"].reshape(-1)

  g = jax.vmap(lambda c: jax.vmap(lambda row: one(c, row))(rows))(cotangent)  # [D, B, P]
  tokens = inputs.shape[0] * inputs.shape[1]
  matrix = jnp.einsum("dbi,dbj->ij", g, g) / (draws * tokens)
  return matrix, h_last


def _outputs_vjp(params, arch, x, h0, spec, space):
  """(outputs, vjp w.r.t. arch[rnn.KIND], h_T) of the cell over x."""
  def run(a):
    outputs, h_last = rnn.unroll(params["cell"], a, x, h0, spec, norm=space.norm,
                                 origin=space.origin)
    return outputs, h_last
  outputs, vjp_fn, h_last = jax.vjp(run, arch[rnn.KIND], has_aux=True)
  return outputs, vjp_fn, h_last


def _masked(arch, masks):
  """Scalars with the pruned ones at 0 (plain or probed scalars)."""
  return masked_arch(arch, masks)


def steps_for(spec, config, train_arch: bool, norm: str | None = None) -> "Steps":
  """`Steps(spec, config, train_arch, norm)`, built once per process for the
  same cell, flags and config sections that shape the steps (`space`, `train`,
  `search`): a relaunch in the same process (a resumed run, a sweep) reuses the
  compiled functions."""
  key = (spec, train_arch, norm, config.space.to_json_best_effort(sort_keys=True),
         config.train.to_json_best_effort(sort_keys=True),
         config.search.to_json_best_effort(sort_keys=True))
  if key not in _STEPS:
    _STEPS[key] = Steps(spec, config, train_arch, norm)
  return _STEPS[key]


_STEPS = {}


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

    draws = int(config.search.get("pair_fisher_draws", 4))

    @jax.jit
    def pair_fisher_step(params, arch, masks, inputs, h, key):
      return pair_fisher(params, _masked(arch, masks), inputs, h, spec, s, key, draws)[0]

    @jax.jit
    def eval_step(params, arch, masks, inputs, targets, h):
      return lm_loss(params, _masked(arch, masks)[rnn.KIND], inputs, targets, h, spec, s)

    self.train_step, self.curvature_step, self.eval_step = train_step, curvature_step, eval_step
    self.pair_fisher_step = pair_fisher_step


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


@jax.jit
def _running_mean(mean, params, count):
  """mean of `count` iterates updated with one more (ASGD's averaged iterate)."""
  return jax.tree_util.tree_map(lambda m, p: m + (p - m) / (count + 1), mean, params)


def _epoch(steps, run, masks, omega, stream, config, epoch, limit, phase, log,
           average=False):
  """One epoch (or `limit` steps) of `steps.train_step` on `run.state` (an
  `LMState`; with `average`, ASGD's average is updated after every step too),
  as phase `phase` of the resumable `run` (`loop.Run`): a relaunch skips the
  windows already done. Returns the steps done in the phase."""
  if run.step(phase) == 0:
    run.state = run.state.replace(h=jnp.zeros((stream.shape[0], config.space.size)))
  losses = []
  for i, (inputs, targets, length) in enumerate(
      text.windows(stream, config.input.bptt, seed=config.seed, epoch=epoch,
                   max_len=config.input.bptt + 20, random_length=config.input.random_length,
                   quantum=config.input.length_quantum)):
    if limit and i >= limit:
      break
    if i < run.step(phase):
      continue  # done before a relaunch
    s = run.state
    key, sub = jax.random.split(s.key)
    params, arch, opt_w, opt_a, loss, h = steps.train_step(
        s.params, s.arch, s.opt_w, s.opt_a, masks, omega, jnp.asarray(inputs),
        jnp.asarray(targets), s.h, sub, jnp.float32(length / config.input.bptt))
    new = s.replace(params=params, arch=arch, opt_w=opt_w, opt_a=opt_a, key=key, h=h)
    if average:
      new = new.replace(average=_running_mean(s.average, params, s.average_count),
                        average_count=s.average_count + 1)
    run.state = new
    losses.append(loss)
    run.advance(phase, {"loss": loss})
    done = run.step(phase)
    if done % config.log_every_steps == 0:
      run.check()
      log(f"{phase}: step {done}, loss {float(np.mean(jax.device_get(losses[-50:]))):.3f}")
  run.check()
  return run.step(phase)
