"""Probed tensors (`bayesnas_jax.nn.probe`): indexing one is a selection, with the
gradient and curvature of the selected entry alone."""
import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import nn, value_grad_curvature

F64 = jnp.float64


def test_probed_tensor_indexing_is_a_selection():
  w = jnp.asarray([0.5, 2.0, -1.0], F64)
  x = jnp.linspace(-1, 1, 12, dtype=F64).reshape(4, 3)
  def loss(p):
    return nn.mean_squared_error(nn.scale(x, p["w"][1]), jnp.zeros_like(x))
  _, grads, curv = value_grad_curvature(loss, {"w": w})
  # Only entry 1 is used: its gradient and curvature are those of a·x under MSE.
  expected_h = np.mean(np.square(np.asarray(x))) * 2
  np.testing.assert_allclose(curv["w"], [0, expected_h, 0], rtol=1e-12)
  np.testing.assert_allclose(grads["w"], jax.grad(lambda v: jnp.mean((v[1] * x) ** 2))(w),
                             rtol=1e-12)
