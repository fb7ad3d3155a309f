"""Oracle B of the curvature engine (SPEC §5), in the manner of BackPACK's tests: on
tiny random nets that together use every primitive of `bayesnas_jax.nn` (and so
every curvature rule), gradient and curvature must equal the independent numpy
recursion of `curvature_reference`; gradients equal `jax.grad`; float32 stays
float32; vmap over parameter sets equals a loop."""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import nn, value_grad_curvature
from tests import curvature_reference as ref
from tests.curvature_reference import node
from tests.curvature_support import MODES, assert_close, assert_trees_close, jit

TOL = {"float64": 1e-6, "float32": 1e-4}


# ----------------------------------------------------------------------------
# Oracle B: the numpy reference. Its graph records, run with bayesnas_jax.nn.


def _conv(xs, ps, **opts):
  return nn.conv2d(xs[0], ps[0], b=ps[1] if len(ps) > 1 else None, **opts)


JAX_OPS = {
    "dense": lambda xs, ps: nn.dense(xs[0], *ps),
    "conv": _conv,
    "scale": lambda xs, ps: nn.scale(xs[0], ps[0]),
    "bn": lambda xs, ps, eps=1e-5: nn.batch_norm(xs[0], *ps, eps=eps),
    "avg_pool": lambda xs, ps, **opts: nn.avg_pool(xs[0], **opts),
    "max_pool": lambda xs, ps, **opts: nn.max_pool(xs[0], **opts),
    "gap": lambda xs, ps: nn.global_avg_pool(xs[0]),
    "concat": lambda xs, ps: nn.concat(xs),
    "add": lambda xs, ps: nn.add(*xs),
    "relu": lambda xs, ps: nn.relu(xs[0]),
    "tanh": lambda xs, ps: nn.tanh(xs[0]),
    "sigmoid": lambda xs, ps: nn.sigmoid(xs[0]),
    "identity": lambda xs, ps: nn.identity(xs[0]),
}
LOSSES = {"ce": nn.softmax_cross_entropy, "mse": nn.mean_squared_error}


def make_loss(nodes, loss):
  def loss_fn(params, x, target):
    env = {"x": x}
    for nd in nodes:
      env[nd.name] = JAX_OPS[nd.kind]([env[i] for i in nd.inputs],
                                      [params[p] for p in nd.params], **nd.opts)
    return LOSSES[loss](env[nodes[-1].name], target)
  return loss_fn


def random_problem(shapes, x_shape, loss, classes, seed, dtype="float64"):
  """Random params (BN scales near 1), input and target of a net."""
  rng = np.random.default_rng(seed)
  params = {}
  for name, shape in shapes.items():
    offset = 1.0 if name.startswith(("gamma", "alpha")) else 0.0
    params[name] = (offset + 0.5 * rng.normal(size=shape)).astype(dtype)
  x = rng.normal(size=x_shape).astype(dtype)
  if loss == "ce":
    target = rng.integers(0, classes, size=x_shape[0])
  else:
    target = rng.normal(size=(x_shape[0], classes)).astype(dtype)
  return params, x, target


# Two tiny nets (batch 3) that together use every primitive; each conv picks
# its `impl` so that lax, shifted and masked_dense all meet strides, dilations
# and groups (a bias feeding batch norm would have zero gradient, so none does).


def conv_ce_net():
  """Convs with stride 1/2, dilation 2, groups 1/2/depthwise (lax, masked_dense,
  shifted), BN with and without affine, max pool stride 2, avg pool stride 1,
  scale, concat, tanh, relu; cross-entropy. Input 6x6: asymmetric SAME pads."""
  nodes = [
      node("c1", "conv", ["x"], ["w1"], impl="lax"),
      node("n1", "bn", ["c1"], ["gamma1", "beta1"]),
      node("a1", "tanh", ["n1"]),
      node("c2", "conv", ["a1"], ["w2"], dilation=2, groups=4, impl="masked_dense"),
      node("c2b", "conv", ["c2"], ["w2b"], groups=4, impl="lax"),
      node("c3", "conv", ["a1"], ["w3"], stride=2, groups=2, impl="masked_dense"),
      node("m", "max_pool", ["c2b"], stride=2),
      node("s", "scale", ["m"], ["alpha"]),
      node("cat", "concat", ["s", "c3"]),
      node("n2", "bn", ["cat"]),
      node("a2", "relu", ["n2"]),
      node("p", "avg_pool", ["a2"], stride=1),
      node("c4", "conv", ["p"], ["w4", "b4"], stride=2, groups=8, impl="shifted"),
      node("g", "gap", ["c4"]),
      node("out", "dense", ["g"], ["wd", "bd"]),
  ]
  shapes = {"w1": (3, 3, 2, 4), "gamma1": (4,), "beta1": (4,), "w2": (3, 3, 1, 4),
            "w2b": (3, 3, 1, 4), "w3": (3, 3, 2, 4), "alpha": (), "w4": (3, 3, 1, 8),
            "b4": (8,), "wd": (8, 5), "bd": (5,)}
  return nodes, shapes, (3, 6, 6, 2), "ce", 5


def mixed_mse_net():
  """Grouped (channel multiplier 2) and depthwise convs with stride 2 and
  dilation 2 (lax, shifted, masked_dense), a 2x2 kernel, avg pool stride 2 on
  5x5, max pool stride 1, add, BN affine, sigmoid, identity, relu, tanh, scale,
  dense with and without bias; mean squared error."""
  nodes = [
      node("c1", "conv", ["x"], ["w1", "b1"], stride=2, dilation=2, groups=3, impl="lax"),
      node("s1", "sigmoid", ["c1"]),
      node("dw1", "conv", ["x"], ["w2"], dilation=2, groups=3, impl="shifted"),
      node("p1", "avg_pool", ["dw1"], stride=2),
      node("dw2", "conv", ["x"], ["w5"], stride=2, dilation=2, groups=3, impl="shifted"),
      node("sum0", "add", ["p1", "dw2"]),
      node("c2", "conv", ["sum0"], ["w3"], groups=3, impl="masked_dense"),
      node("sum", "add", ["s1", "c2"]),
      node("m", "max_pool", ["sum"], stride=1),
      node("i", "identity", ["m"]),
      node("n", "bn", ["i"], ["gamma", "beta"]),
      node("a", "relu", ["n"]),
      node("c3", "conv", ["a"], ["w4"], stride=2, impl="lax"),
      node("g", "gap", ["c3"]),
      node("sg", "scale", ["g"], ["alpha"]),
      node("d1", "dense", ["sg"], ["wd1", "bd1"]),
      node("t", "tanh", ["d1"]),
      node("out", "dense", ["t"], ["wd2"]),
  ]
  shapes = {"w1": (3, 3, 1, 6), "b1": (6,), "w2": (3, 3, 1, 3), "w5": (3, 3, 1, 3),
            "w3": (1, 1, 1, 6), "gamma": (6,), "beta": (6,), "w4": (2, 2, 6, 4),
            "alpha": (), "wd1": (4, 3), "bd1": (3,), "wd2": (3, 2)}
  return nodes, shapes, (3, 5, 5, 3), "mse", 2


NETS = {"conv_ce": conv_ce_net, "mixed_mse": mixed_mse_net}


class Case(NamedTuple):
  loss_fn: Callable
  run_all: Callable  # jitted (params, x, target) -> {mode: engine output, "jax.grad": ...}
  problem: tuple     # (params, x, target)
  results: dict      # run_all(*problem)
  nodes: list
  loss: str


def compiled(net, dtype="float64") -> Case:
  """A net's problem and results, built and compiled once per dtype: one jitted
  call gives the engine's output in both modes and `jax.grad` of the same loss."""
  return _compiled(net, dtype)  # one cache key however the arguments are spelled


@functools.lru_cache(maxsize=None)
def _compiled(net, dtype):
  nodes, shapes, x_shape, loss, classes = NETS[net]()
  loss_fn = make_loss(nodes, loss)
  problem = random_problem(shapes, x_shape, loss, classes, seed=0, dtype=dtype)

  @jit
  def run_all(params, x, target):
    out = {m: value_grad_curvature(loss_fn, params, x, target, mode=m) for m in MODES}
    out["jax.grad"] = jax.grad(loss_fn)(params, x, target)
    return out

  return Case(loss_fn, run_all, problem, run_all(*problem), nodes, loss)


def reference(net, dtype="float64", mode="hessian"):
  """The numpy reference's (loss, grads, curvature) on the problem of `compiled`."""
  case = compiled(net, dtype)
  return ref.run(case.nodes, *case.problem, case.loss, mode)


@pytest.mark.parametrize("net", sorted(NETS))
def test_matches_numpy_reference_float64(net):
  results = compiled(net).results
  for mode in MODES:
    loss, grads, curvs = results[mode]
    ref_loss, ref_grads, ref_curvs = reference(net, mode=mode)
    assert_close(loss, ref_loss, 1e-12, "loss")
    assert_trees_close(grads, ref_grads, 1e-10, f"{net}/{mode} grad")
    assert_trees_close(curvs, ref_curvs, TOL["float64"], f"{net}/{mode} curv")
  # The modes differ (tanh/sigmoid residuals), so each was really checked.
  assert not np.allclose(results["hessian"][2]["w1"], results["ggn"][2]["w1"], rtol=1e-3)


@pytest.mark.parametrize("net", sorted(NETS))
def test_gradient_equals_jax_grad(net):
  results = compiled(net).results
  expected = results["jax.grad"]
  for mode in MODES:
    grads = results[mode][1]
    for key in expected:
      np.testing.assert_allclose(grads[key], expected[key], rtol=1e-13,
                                 atol=1e-15 * np.max(np.abs(expected[key])), err_msg=key)


@pytest.mark.parametrize("net", sorted(NETS))
def test_float32_matches_reference_and_stays_float32(net):
  results = compiled(net, "float32").results
  for mode in MODES:
    loss, grads, curvs = results[mode]
    for leaf in [loss, *grads.values(), *curvs.values()]:
      assert leaf.dtype == jnp.float32
    ref_loss, ref_grads, ref_curvs = reference(net, "float32", mode)
    assert_close(loss, ref_loss, TOL["float32"], "loss")
    # A float32 gradient that nearly cancels is only accurate relative to the
    # other gradients, so the scale is that of the whole tree.
    assert_trees_close(grads, ref_grads, TOL["float32"], f"{net}/{mode} grad", tree_scale=True)
    assert_trees_close(curvs, ref_curvs, TOL["float32"], f"{net}/{mode} curv")


def test_vmap_over_parameter_sets_equals_loop():
  case = compiled("mixed_mse")
  params, x, target = case.problem
  stacked = {k: jnp.stack([v, 0.5 * v, v + 0.1]) for k, v in params.items()}
  engine = functools.partial(value_grad_curvature, case.loss_fn, mode="hessian")
  out = jit(jax.vmap(lambda p: engine(p, x, target)))(stacked)
  for i in range(3):
    single = case.run_all({k: v[i] for k, v in stacked.items()}, x, target)["hessian"]
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(single)):
      np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-14)
  # The parameter sets differ, so the batch is not three copies of one answer.
  assert not np.allclose(out[2]["w2"][0], out[2]["w2"][1])
