"""Cost of a jitted `value_grad_curvature` that keeps (loss, grads, curvature)
against one that drops the gradients, side by side in one run.

  python -m launch.bench_dropped_grads --cells_per_stage=2 --size=32 --batch=64

An NB201-like Flax network of `bayesnas_jax.flax` layers (C = 8; NB201's 6-edge cell
with identity, ReLU-conv-BN 1×1 and 3×3 and avg-pool 3×3 as `MixedOp`s; three stages),
every parameter probed. Prints one JSON line per program: compile seconds, seconds per
step (mean of 3 after a warm-up) and lines of optimised HLO, then their ratios.
"""
import json
import time

import flax.linen as linen
import jax
import jax.numpy as jnp
from absl import app
from absl import flags

from bayesnas_jax import flax as bnf
from bayesnas_jax import nn, value_grad_curvature

FLAGS = flags.FLAGS
flags.DEFINE_integer("channels", 8, "C of the first stage.")
flags.DEFINE_integer("cells_per_stage", 2, "Cells per stage.")
flags.DEFINE_integer("size", 32, "Image size.")
flags.DEFINE_integer("batch", 64, "Batch size.")


class _ReluConvBN(linen.Module):
  features: int
  kernel: int

  @linen.compact
  def __call__(self, x):
    x = bnf.Conv(self.features, self.kernel, use_bias=False)(nn.relu(x))
    return bnf.BatchNorm(use_running_average=False, use_scale=False, use_bias=False)(x)


class _Cell(linen.Module):
  features: int

  @linen.compact
  def __call__(self, x):
    nodes = [x]
    for j in range(1, 4):
      ops = lambda: [lambda z: z, _ReluConvBN(self.features, 1),
                     _ReluConvBN(self.features, 3), lambda z: nn.avg_pool(z, 3, 1)]
      nodes.append(nn.add(*[bnf.MixedOp(ops())(nodes[i]) for i in range(j)]))
    return nodes[-1]


class _Net(linen.Module):
  channels: int
  cells_per_stage: int

  @linen.compact
  def __call__(self, x):
    x = bnf.BatchNorm(use_running_average=False)(bnf.Conv(self.channels, 3)(x))
    for stage in range(3):
      width = self.channels * 2 ** stage
      if stage:
        x = nn.avg_pool(_ReluConvBN(width, 3)(x), 2, 2)
      for _ in range(self.cells_per_stage):
        x = _Cell(width)(x)
    return bnf.Dense(10)(nn.global_avg_pool(x))


def main(argv):
  del argv
  model = _Net(FLAGS.channels, FLAGS.cells_per_stage)
  x = jax.random.normal(jax.random.key(1), (FLAGS.batch, FLAGS.size, FLAGS.size, 3))
  labels = jnp.arange(FLAGS.batch) % 10
  variables = model.init(jax.random.key(0), x[:2])
  mask = {"params": True, "arch": True, "batch_stats": False}

  def full(v):
    return value_grad_curvature(lambda v_: nn.softmax_cross_entropy(model.apply(v_, x), labels),
                                v, probe_mask=mask)

  def curvature_only(v):
    loss, _, curvature = full(v)
    return loss, curvature

  rows = {}
  for name, fn in (("loss_grads_curvature", full), ("loss_curvature", curvature_only)):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(variables).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(variables))
    start = time.perf_counter()
    for _ in range(3):
      out = compiled(variables)
    jax.block_until_ready(out)
    rows[name] = {"compile_s": round(compile_s, 2),
                  "step_s": round((time.perf_counter() - start) / 3, 4),
                  "hlo_lines": compiled.as_text().count("\n")}
    print(json.dumps({"program": name, **rows[name]}), flush=True)
  a, b = rows["loss_curvature"], rows["loss_grads_curvature"]
  print(json.dumps({"ratio_curvature_only_over_full": {
      k: round(a[k] / b[k], 3) for k in ("compile_s", "step_s", "hlo_lines")},
                    "device": jax.devices()[0].device_kind}), flush=True)


if __name__ == "__main__":
  app.run(main)
