"""Dropping half of `value_grad_curvature`'s output must drop its cost too.

A jitted function that keeps only (loss, curvature) once compiled to a program
2.7× larger than the one keeping the gradients too, and ran 10× slower (NB201-like
net, batch 64, 32×32, CPU): every curvature rule tied its residuals to both
cotangents, so the dead gradient chain stayed alive and XLA recomputed it inside
every fusion that read a tie. Measured here by the optimised HLO's instruction
count, which does not depend on the machine's speed. The same holds through
the NNX layers and `bayesnas_jax.nnx.value_grad_curvature`.
"""
import flax.linen as linen
import jax
import jax.numpy as jnp
from flax import nnx

from bayesnas_jax import flax as bnf
from bayesnas_jax import nn, value_grad_curvature
from bayesnas_jax import nnx as bnx


class _Cell(linen.Module):
  @linen.compact
  def __call__(self, x):
    nodes = [x]
    for j in range(1, 4):
      terms = []
      for i in range(j):
        conv = lambda z: bnf.BatchNorm(use_running_average=False, use_scale=False,
                                       use_bias=False)(bnf.Conv(4, 3, use_bias=False)(nn.relu(z)))
        terms.append(bnf.MixedOp([lambda z: z, conv, lambda z: nn.avg_pool(z, 3, 1)])(nodes[i]))
      nodes.append(nn.add(*terms))
    return nodes[-1]


class _Net(linen.Module):
  @linen.compact
  def __call__(self, x):
    x = bnf.Conv(4, 3)(x)
    for _ in range(2):
      x = _Cell()(x)
    return bnf.Dense(10)(nn.global_avg_pool(x))


def _instructions(fn, *args):
  text = jax.jit(fn).lower(*args).compile().as_text()
  return sum(1 for line in text.splitlines() if " = " in line)


def test_dropping_gradients_does_not_grow_the_program():
  model = _Net()
  # 16×16, batch 8: before the fix the curvature-only program had 2.4× the
  # instructions of the full one (52,508 against 22,260); after it, 0.43×.
  x = jax.random.normal(jax.random.key(0), (8, 16, 16, 3), jnp.float32)
  labels = jnp.arange(8)
  variables = model.init(jax.random.key(1), x)
  mask = {"params": True, "arch": True, "batch_stats": False}

  def full(v):
    return value_grad_curvature(lambda v_: nn.softmax_cross_entropy(model.apply(v_, x), labels),
                                v, probe_mask=mask)

  def curvature_only(v):
    loss, _, curvature = full(v)
    return loss, curvature

  def gradients_only(v):
    loss, grads, _ = full(v)
    return loss, grads

  both = _instructions(full, variables)
  assert _instructions(curvature_only, variables) < both
  assert _instructions(gradients_only, variables) < both


class _NNXCell(nnx.Module):
  """_Cell with the NNX layers."""

  def __init__(self, rngs):
    def conv():
      return nnx.Sequential(nn.relu, bnx.Conv(4, 4, (3, 3), use_bias=False, rngs=rngs),
                            bnx.BatchNorm(4, use_scale=False, use_bias=False, rngs=rngs))
    self.mixes = nnx.List([bnx.MixedOp([lambda z: z, conv(), lambda z: nn.avg_pool(z, 3, 1)])
                           for j in range(1, 4) for _ in range(j)])

  def __call__(self, x):
    nodes, mixes = [x], iter(self.mixes)
    for j in range(1, 4):
      nodes.append(nn.add(*[next(mixes)(nodes[i]) for i in range(j)]))
    return nodes[-1]


class _NNXNet(nnx.Module):
  def __init__(self, rngs):
    self.stem = bnx.Conv(3, 4, (3, 3), rngs=rngs)
    self.cell = _NNXCell(rngs)
    self.head = bnx.Linear(4, 10, rngs=rngs)

  def __call__(self, x):
    return self.head(nn.global_avg_pool(self.cell(self.stem(x))))


def test_dropping_gradients_does_not_grow_the_nnx_program():
  # The NNX path adds only tracing-time work (split, merge): a step that keeps
  # the curvature alone must still compile to fewer instructions.
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3), jnp.float32)
  labels = jnp.arange(4)
  graphdef, state = nnx.split(_NNXNet(nnx.Rngs(1)))

  def full(state_):
    model = nnx.merge(graphdef, state_)
    return bnx.value_grad_curvature(lambda m: nn.softmax_cross_entropy(m(x), labels), model,
                                    wrt=(nnx.Param, bnx.ArchParam))

  def curvature_only(state_):
    loss, _, curvature = full(state_)
    return loss, curvature

  # When written: 6,355 instructions against 13,915.
  assert _instructions(curvature_only, state) < _instructions(full, state)
