"""The DARTS ops (`bayesnas_jax.spaces.ops`): the folded pointwise map of E edges."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import nn
from bayesnas_jax.curvature import exact_diagonal, value_grad_curvature
from bayesnas_jax.spaces import ops as ops_lib


def test_folded_pointwise_is_one_matmul_per_edge_with_exact_curvature():
  """The batched 1×1 map of E folded edges equals a per-edge NumPy matmul, and
  under MSE (diagonal output Hessian) its weight curvature is exact."""
  rng = np.random.default_rng(3)
  edges, c, d = 3, 2, 4
  x = rng.standard_normal((2, 3, 3, edges * c))
  w = rng.standard_normal((edges, c, d))
  target = rng.standard_normal((2, 3, 3, edges * d))
  expected = np.concatenate([x[..., e * c:(e + 1) * c] @ w[e] for e in range(edges)], -1)
  np.testing.assert_allclose(ops_lib.pointwise(jnp.asarray(x), jnp.asarray(w)), expected,
                             rtol=1e-12, atol=1e-12)

  def loss(params, x, target):
    return nn.mean_squared_error(ops_lib.pointwise(x, params["w"]), target)

  params = {"w": jnp.asarray(w)}
  _, grads, curvature = value_grad_curvature(loss, params, x, target)
  np.testing.assert_allclose(grads["w"], jax.grad(loss)(params, x, target)["w"], rtol=1e-12)
  exact = exact_diagonal(loss, params, x, target)
  np.testing.assert_allclose(curvature["w"], exact["w"], rtol=1e-10, atol=1e-14)
  with pytest.raises(ValueError, match="pointwise: input has 5 channels, expected 3 edges"):
    ops_lib.pointwise(jnp.zeros((1, 5)), jnp.asarray(w))
