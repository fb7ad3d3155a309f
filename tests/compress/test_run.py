"""Pieces of the compression loop (`bayesnas_jax.compress.run`): the cosine
learning-rate factor, the distillation gradient, the λ ramp and per-layer λ."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest


def test_cosine_factor_runs_from_one_to_zero():
  from bayesnas_jax.compress import run
  total = 8
  factors = [run.lr_scale(step, total) for step in range(total + 1)]
  assert factors[0] == 1.0 and abs(factors[4] - 0.5) < 1e-12 and abs(factors[-1]) < 1e-12
  assert all(a > b for a, b in zip(factors, factors[1:]))


def test_distillation_gradient_is_the_softened_difference():
  """d/dz of T²·CE(softmax(t/T), softmax(z/T)) averaged over B examples is
  T·(softmax(z/T) − softmax(t/T))/B (hand-derived), zero where student = teacher."""
  from bayesnas_jax.compress import run
  z = jnp.asarray([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], jnp.float64)
  t = jnp.asarray([[2.0, 0.0, -1.0], [0.5, 1.0, 1.0]], jnp.float64)
  for temperature in (1.0, 4.0):
    grad = jax.grad(run.distillation_loss)(z, t, temperature)
    expected = temperature * (jax.nn.softmax(z / temperature)
                              - jax.nn.softmax(t / temperature)) / 2
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jax.grad(run.distillation_loss)(t, t, temperature), 0,
                               atol=1e-14)


def test_lambda_ramp_factors():
  from bayesnas_jax.compress import run
  assert [run.ramp_factor("linear", t, 4) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
  assert [run.ramp_factor("constant", t, 4) for t in range(4)] == [1.0] * 4


def test_layer_lambdas_default_and_override():
  from configs import compress_lenet5_mnist  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.compress import run  # pylint: disable=import-outside-toplevel
  config = compress_lenet5_mnist.get_config()
  kinds = {"Conv_0": ("filter",), "Dense_0": ("row",)}
  config.compress.layer_lambda.Conv_0 = 1e-5
  assert run.layer_lambdas(config, kinds) == {"Conv_0": 1e-5, "Dense_0": config.compress.lambda_}
  config.compress.method = "group_lasso"
  assert set(run.layer_lambdas(config, kinds).values()) == {config.compress.group_lasso_lambda}
  config.compress.method = "bayes"
  config.compress.layer_lambda.Conv_0 = -1.0
  with pytest.raises(ValueError, match="config.compress.layer_lambda.Conv_0"):
    run.layer_lambdas(config, kinds)
