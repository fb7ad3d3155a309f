"""Tests of the curvature engine (SPEC §5), in the manner of BackPACK's tests.

Oracle A: where the diagonal recursion is exact (the last layer under cross-
entropy; layers whose output Hessian is diagonal under MSE; every layer of a
scalar-output net in mode "hessian") it must equal the diagonal of `jax.hessian`.
Then: jit equals eager; bad input raises a one-line ValueError. Oracle B, the
independent numpy recursion of `curvature_reference` on nets that use every
primitive, is tests/nn/test_rules.py.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import exact_diagonal, nn, value_grad_curvature
from tests.curvature_support import (MODES, assert_close, assert_trees_close, jit,
                                     random_arrays)


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
