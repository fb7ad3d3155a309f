"""Speed of the recurrent cell search at the thesis' size, on synthetic tokens.

  python -m launch.bench_rnn --config=configs/darts_ptb_search.py [--steps=5]

Prints one JSON object: compile seconds of the training and curvature steps,
seconds per training step and per curvature step (a window of `input.bptt`
tokens, batch `input.batch_size`), their ratio measured side by side, and the
wall time of one PTB epoch of training (929,590 tokens) that these imply.
"""
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from bayesnas_jax.lm import model as lm_model
from bayesnas_jax.search import hard
from bayesnas_jax.spaces import rnn

config_flags.DEFINE_config_file("config", None, "Search config.", lock_config=False)
flags.DEFINE_integer("steps", 5, "Timed steps of each kind.")
flags.DEFINE_integer("vocab", 10000, "Vocabulary size (PTB: 10,000).")
flags.DEFINE_integer("tokens", 929590, "Training tokens of one epoch (PTB: 929,590).")
FLAGS = flags.FLAGS


def _timed(fn, steps):
  out = fn()
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def main(argv):
  del argv
  config = FLAGS.config
  spec = rnn.cell_spec(config.space.num_nodes, tuple(config.space.ops))
  batch, bptt, size = config.input.batch_size, config.input.bptt, config.space.size
  params = lm_model.init_params(jax.random.PRNGKey(0), FLAGS.vocab, size, spec)
  arch = rnn.init_arch(spec)
  state = hard.init_prior(arch, "cell_type")
  masks = hard.network_masks(state.keep, arch)
  steps = lm_model.Steps(spec, config, train_arch=True)
  opt_w, opt_a = steps.weight_opt.init(params), steps.arch_opt.init(arch)
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(0, FLAGS.vocab, (batch, bptt)), jnp.int32)
  targets = jnp.asarray(rng.integers(0, FLAGS.vocab, (batch, bptt)), jnp.int32)
  h = jnp.zeros((batch, size))
  key = jax.random.PRNGKey(1)

  def train():
    return steps.train_step(params, arch, opt_w, opt_a, masks, state.omega, inputs, targets,
                            h, key, jnp.float32(1.0))[4]

  def curvature():
    return steps.curvature_step(params, arch, masks, inputs, targets, h)[0]

  t0 = time.perf_counter()
  jax.block_until_ready(train())
  compile_train = time.perf_counter() - t0
  t0 = time.perf_counter()
  jax.block_until_ready(curvature())
  compile_curvature = time.perf_counter() - t0
  # Side by side, alternating, so that both see the same machine load.
  train_s = curvature_s = 0.0
  for _ in range(2):
    train_s += _timed(train, FLAGS.steps) / 2
    curvature_s += _timed(curvature, FLAGS.steps) / 2
  windows = FLAGS.tokens / (batch * bptt)
  print(json.dumps({
      "device": jax.devices()[0].device_kind, "size": size, "nodes": spec.num_nodes,
      "batch": batch, "bptt": bptt, "vocab": FLAGS.vocab, "horizon": config.search.horizon,
      "compile_train_s": round(compile_train, 2), "compile_curvature_s": round(compile_curvature, 2),
      "train_step_s": round(train_s, 4), "curvature_step_s": round(curvature_s, 4),
      "ratio": round(curvature_s / train_s, 3),
      "epoch_train_s": round(windows * train_s, 1)}, indent=1))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
