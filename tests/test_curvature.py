"""Tests of the curvature engine (SPEC §5), in the manner of BackPACK's tests.

Oracle A: where the diagonal recursion is exact (the last layer under cross-
entropy; layers whose output Hessian is diagonal under MSE; every layer of a
scalar-output net in mode "hessian") it must equal the diagonal of `jax.hessian`.
Oracle B: on tiny random nets that together use every primitive, gradient and
curvature must equal the independent numpy recursion of `curvature_reference`.
Then: gradients equal `jax.grad`; jit equals eager; vmap equals a loop; float32
stays float32; bad input raises a one-line ValueError.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curvature_reference as ref
from bayesnas_jax import exact_diagonal, nn, value_grad_curvature
from curvature_reference import node

MODES = ("hessian", "ggn")
TOL = {"float64": 1e-6, "float32": 1e-4}
# XLA's CPU compile time dominates these tiny problems (float64 convolutions
# especially); backend optimisation level 0 compiles them about 3x faster.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def assert_close(actual, expected, tol, what="", scale=None):
  """Entry-wise agreement to `tol`, relative to each entry and to `scale` (by
  default the largest entry of `expected`)."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, what
  if scale is None:
    scale = max(np.max(np.abs(expected), initial=0.0), 1e-30)
  np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


def assert_trees_close(actual, expected, tol, what="", tree_scale=False):
  """Leaf-wise `assert_close`; with `tree_scale` the scale is the largest entry
  of the whole tree instead of each leaf's."""
  assert set(actual) == set(expected), what
  largest = max(np.max(np.abs(v)) for v in expected.values())
  for key in expected:
    assert_close(actual[key], expected[key], tol, f"{what} {key}",
                 scale=largest if tree_scale else None)


# ----------------------------------------------------------------------------
# Oracle A: where the diagonal recursion is exact.


def hessian_diagonal(loss_fn, params, *args):
  """The diagonal of `jax.hessian` for every leaf of a flat dict of params."""
  hessian = jax.hessian(loss_fn)(params, *args)
  return {k: jnp.diagonal(hessian[k][k].reshape(v.size, v.size)).reshape(v.shape)
          for k, v in params.items()}


def engine_and_exact(loss_fn, params, *args):
  """Curvature in both modes and the exact Hessian diagonal, in one compile."""
  @jit
  def both(params, *args):
    curvs = {m: value_grad_curvature(loss_fn, params, *args, mode=m)[2] for m in MODES}
    return curvs, hessian_diagonal(loss_fn, params, *args)
  return both(params, *args)


def random_arrays(seed, **shapes):
  rng = np.random.default_rng(seed)
  return {k: rng.normal(size=shape) for k, shape in shapes.items()}


def relative_gap(actual, expected):
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def two_layer_ce(p, x, labels):
  a = nn.tanh(nn.dense(x, p["w1"], p["b1"]))
  return nn.softmax_cross_entropy(nn.dense(a, p["w2"], p["b2"]), labels)


def two_layer_ce_problem():
  params = random_arrays(1, w1=(4, 5), b1=(5,), w2=(5, 3), b2=(3,))
  x = random_arrays(2, x=(3, 4))["x"]
  return params, x, np.array([0, 2, 1])


def test_last_dense_layer_exact_under_cross_entropy():
  params, x, labels = two_layer_ce_problem()
  curvs, exact = engine_and_exact(two_layer_ce, params, x, labels)
  for mode in MODES:
    for key in ("w2", "b2"):
      assert_close(curvs[mode][key], exact[key], 1e-6, f"{mode} {key}")
  # The library's own slow oracle agrees with jax.hessian.
  oracle = jit(lambda p: exact_diagonal(two_layer_ce, p, x, labels, wrt="w2"))(params)
  assert_close(oracle, exact["w2"], 1e-10, "exact_diagonal")
  # Below the softmax the dropped −ppᵀ terms matter: the first layer is not exact.
  assert relative_gap(curvs["hessian"]["w1"], exact["w1"]) > 1e-3


def test_single_dense_layer_exact_under_mse():
  params = random_arrays(3, w=(4, 2), b=(2,))
  x, target = random_arrays(4, x=(3, 4), t=(3, 2)).values()
  loss_fn = lambda p, x, t: nn.mean_squared_error(nn.dense(x, p["w"], p["b"]), t)
  curvs, exact = engine_and_exact(loss_fn, params, x, target)
  for mode in MODES:
    assert_trees_close(curvs[mode], exact, 1e-6, mode)
  oracle = jit(lambda p: exact_diagonal(loss_fn, p, x, target))(params)
  assert_trees_close(oracle, exact, 1e-10, "exact_diagonal")


def bottleneck_mse(p, x, t):
  """x -> dense -> tanh -> ·alpha -> dense -> ·beta -> MSE."""
  a = nn.scale(nn.tanh(nn.dense(x, p["w1"], p["b1"])), p["alpha"])
  return nn.mean_squared_error(nn.scale(nn.dense(a, p["w2"], p["b2"]), p["beta"]), t)


def bottleneck_problem(width):
  params = random_arrays(5, w1=(4, width), b1=(width,), w2=(width, 2), b2=(2,))
  params.update(alpha=np.array(0.8), beta=np.array(1.3))
  x, target = random_arrays(6, x=(3, 4), t=(3, 2)).values()
  return params, x, target


def test_architecture_scalars_exact_under_mse():
  """Under MSE the output Hessian is diagonal. A scalar on the last dense
  layer's output (beta) is then exact, and so is a scalar on its input (alpha)
  when that input has one feature per example — indeed every layer is, in mode
  "hessian". With a wider input the dropped off-diagonal of W Wᵀ makes the
  scalar on the input inexact, while beta stays exact."""
  curvs, exact = engine_and_exact(bottleneck_mse, *bottleneck_problem(width=1))
  assert_trees_close(curvs["hessian"], exact, 1e-6, "width 1")
  for key in ("alpha", "beta", "w2", "b2"):
    assert_close(curvs["ggn"][key], exact[key], 1e-6, f"ggn {key}")
  curvs, exact = engine_and_exact(bottleneck_mse, *bottleneck_problem(width=3))
  assert_close(curvs["hessian"]["beta"], exact["beta"], 1e-6, "beta")
  assert relative_gap(curvs["hessian"]["alpha"], exact["alpha"]) > 1e-2


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_scalar_output_net_exact_in_hessian_mode(activation):
  act = getattr(nn, activation)

  def loss_fn(p, x, t):
    h = nn.dense(x, p["w1"], p.get("b1"))
    return nn.mean_squared_error(nn.dense(act(h), p["w2"], p.get("b2")), t)

  x, target = random_arrays(7, x=(3, 4), t=(3, 1)).values()
  for bias in (True, False):
    shapes = dict(w1=(4, 5), w2=(5, 1), **(dict(b1=(5,), b2=(1,)) if bias else {}))
    params = random_arrays(8, **shapes)
    curvs, exact = engine_and_exact(loss_fn, params, x, target)
    assert_trees_close(curvs["hessian"], exact, 1e-6, f"{activation} bias={bias}")
    if activation != "relu":  # without the σ'' residual the first layer is off
      assert relative_gap(curvs["ggn"]["w1"], exact["w1"]) > 1e-3


def test_relu_hessian_equals_ggn_and_tanh_does_not():
  def deep(act):
    def loss_fn(p, x, labels):
      a = act(nn.dense(act(nn.dense(x, p["w1"], p["b1"])), p["w2"], p["b2"]))
      return nn.softmax_cross_entropy(nn.dense(a, p["w3"]), labels)
    return loss_fn

  params = random_arrays(9, w1=(4, 5), b1=(5,), w2=(5, 5), b2=(5,), w3=(5, 3))
  x, labels = random_arrays(10, x=(3, 4))["x"], np.array([1, 0, 2])
  relu_curvs, _ = engine_and_exact(deep(nn.relu), params, x, labels)
  assert any(np.any(v != 0) for v in relu_curvs["hessian"].values())
  for key in params:
    np.testing.assert_array_equal(relu_curvs["hessian"][key], relu_curvs["ggn"][key])
  tanh_curvs, _ = engine_and_exact(deep(nn.tanh), params, x, labels)
  for key in ("w1", "b1", "w2", "b2"):
    assert relative_gap(tanh_curvs["ggn"][key], tanh_curvs["hessian"][key]) > 1e-3
  np.testing.assert_allclose(tanh_curvs["ggn"]["w3"], tanh_curvs["hessian"]["w3"], rtol=1e-12)


def test_scalar_on_all_logits_under_cross_entropy_is_not_exact():
  """Documents a limit of the diagonal recursion: a scalar scaling every logit
  sees the dropped −ppᵀ block of the softmax Hessian; the weights do not."""
  def loss_fn(p, x, labels):
    return nn.softmax_cross_entropy(nn.scale(nn.dense(x, p["w"], p["b"]), p["alpha"]), labels)

  params = random_arrays(11, w=(4, 3), b=(3,))
  params["alpha"] = np.array(1.5)
  x, labels = random_arrays(12, x=(3, 4))["x"], np.array([2, 2, 0])
  curvs, exact = engine_and_exact(loss_fn, params, x, labels)
  assert relative_gap(curvs["hessian"]["alpha"], exact["alpha"]) > 1e-2
  assert_close(curvs["hessian"]["w"], exact["w"], 1e-6, "w")


# ----------------------------------------------------------------------------
# The default convolution implementation.


def test_auto_grouped_conv_is_masked_dense_on_cpu_and_equals_lax():
  from bayesnas_jax.nn import conv as conv_impls
  expected = "masked_dense" if jax.default_backend() == "cpu" else "lax"
  assert conv_impls.resolve_impl("auto", 4, 2, (3, 3, 2, 6)) == expected
  assert conv_impls.resolve_impl("auto", 4, 4, (3, 3, 1, 4)) == "shifted"
  assert conv_impls.resolve_impl("auto", 4, 1, (3, 3, 4, 6)) == "lax"
  p = random_arrays(15, w=(3, 3, 2, 6))
  x = random_arrays(16, x=(2, 5, 5, 4))["x"]

  def loss(impl):
    return lambda w: jnp.sum(jnp.sin(nn.conv2d(x, w, stride=2, groups=2, impl=impl)))

  for impl in ("auto", "masked_dense"):
    np.testing.assert_allclose(loss(impl)(p["w"]), loss("lax")(p["w"]), rtol=1e-10)
    np.testing.assert_allclose(jax.grad(loss(impl))(p["w"]),
                               jax.grad(loss("lax"))(p["w"]), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------
# A convolution is a dense layer on image patches.


def test_conv_curvature_equals_im2col_dense():
  params = random_arrays(13, w=(3, 3, 2, 4), b=(4,), wd=(4, 3), bd=(3,))
  x = random_arrays(14, x=(3, 5, 5, 2))["x"]
  labels = np.array([0, 1, 2])
  patches, _ = ref.windows(x, 3, 2, 2, 0.0)  # stride 2, dilation 2
  patches = patches.reshape(*patches.shape[:3], -1)

  def head(y, p, labels):
    return nn.softmax_cross_entropy(
        nn.dense(nn.global_avg_pool(nn.tanh(y)), p["wd"], p["bd"]), labels)

  def conv_loss(p, x, labels):
    return head(nn.conv2d(x, p["w"], stride=2, dilation=2, b=p["b"], impl="lax"), p, labels)

  def dense_loss(p, patches, labels):
    return head(nn.dense(patches, p["w"], p["b"]), p, labels)

  dense_params = dict(params, w=params["w"].reshape(-1, 4))  # HWI rows, as the patches

  @jit
  def both(params, dense_params, x, patches, labels):
    return [[value_grad_curvature(f, ps, data, labels, mode=m) for m in MODES]
            for f, ps, data in ((conv_loss, params, x), (dense_loss, dense_params, patches))]

  conv_out, dense_out = both(params, dense_params, x, patches, labels)
  for (_, g_conv, h_conv), (_, g_dense, h_dense) in zip(conv_out, dense_out):
    for tree in (g_conv, h_conv):
      tree["w"] = tree["w"].reshape(-1, 4)
    assert_trees_close(g_conv, g_dense, 1e-10, "grad")
    assert_trees_close(h_conv, h_dense, 1e-10, "curv")


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


class JitAndEager(chex.TestCase):
  """The engine with and without jit (`chex.variants`) against the float64
  oracle: the last layer's curvature is the Hessian diagonal, gradients equal
  `jax.grad`, the two variants agree to rounding."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_engine_against_oracle(self):
    params, x, labels = two_layer_ce_problem()
    exact = jax.jit(hessian_diagonal, static_argnums=0)(two_layer_ce, params, x, labels)
    expected_grads = jax.grad(two_layer_ce)(params, x, labels)
    engine = self.variant(lambda p: {m: value_grad_curvature(two_layer_ce, p, x, labels, mode=m)
                                     for m in MODES})
    out = engine(params)
    for mode in MODES:
      chex.assert_tree_all_finite(out[mode])
      loss, grads, curvature = out[mode]
      np.testing.assert_allclose(loss, two_layer_ce(params, x, labels), rtol=1e-12)
      assert_trees_close(grads, expected_grads, 1e-10, f"{mode} grads")
      for key in ("w2", "b2"):
        assert_close(curvature[key], exact[key], 1e-6, f"{mode} {key}")


# ----------------------------------------------------------------------------
# Bad input: a one-line ValueError that names the problem.


def _probed_dense_mismatch():
  loss_fn = lambda p: nn.mean_squared_error(nn.dense(jnp.ones((2, 3)), p["w"]), jnp.zeros((2, 2)))
  value_grad_curvature(loss_fn, {"w": jnp.ones((4, 2))})


BAD_INPUTS = {
    "dense features": (lambda: nn.dense(jnp.ones((2, 3)), jnp.ones((4, 2))), "dense.*3 features"),
    "probed dense": (_probed_dense_mismatch, "dense.*3 features"),
    "mode": (lambda: value_grad_curvature(lambda p: p, {"a": 1.0}, mode="newton"), "mode"),
    "labels": (lambda: nn.softmax_cross_entropy(jnp.ones((3, 4)), jnp.zeros((3, 1), int)),
               "labels shape"),
    "mse": (lambda: nn.mean_squared_error(jnp.ones((3, 2)), jnp.ones((3,))), "shape"),
    "groups": (lambda: nn.conv2d(jnp.ones((1, 4, 4, 3)), jnp.ones((3, 3, 1, 4)), groups=2),
               "groups"),
    "impl": (lambda: nn.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)), impl="fft"),
             "impl"),
    "bn stats": (lambda: nn.batch_norm(jnp.ones((2, 3)), mean=jnp.zeros(3)), "mean and var"),
    "integer params": (lambda: value_grad_curvature(
        lambda p: nn.mean_squared_error(nn.scale(jnp.ones(2), p["a"]), jnp.zeros(2)),
        {"a": jnp.ones((), jnp.int32)}), r"params\['a'\] has dtype int32"),
    "non-scalar loss": (lambda: value_grad_curvature(
        lambda p: nn.value_of(nn.scale(jnp.ones(2), p["a"])), {"a": jnp.ones(())}), "scalar"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_one_line_value_error(case):
  call, pattern = BAD_INPUTS[case]
  with pytest.raises(ValueError, match=pattern) as err:
    call()
  assert "\n" not in str(err.value)
