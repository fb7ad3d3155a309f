"""The Gauss–Newton diagonals (bayesnas_jax/curvature.py): the exact
`softmax_ggn_diagonal` (`search.curvature_source = "ggn"`) and the sampled-label
estimate (`search.curvature_source = "sampled"`).

* Exact: it equals Jᵀ(diag p − ppᵀ)J built from a Jacobian taken here by
  reverse mode, float64, on a tiny NB201 network.
* Unbiased: over many label draws its mean matches the exact
  `softmax_ggn_diagonal` on a tiny batch-normalised NB201 network in float64,
  every entry within 5 standard errors of the mean (the estimate of the batch's
  exact diagonal, not of a population quantity: the bound is the draws' own
  sampling error). An estimator that ignored batch norm's coupling or used the
  true labels (the empirical Fisher) is off by far more.
* Its variance is what the docstring states: per entry a relative standard
  deviation near √2 for one draw, halved by four draws.

The search's training step with `curvature_pass = "during"` is in
tests/search/test_objective.py.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bayesnas_jax.curvature import (sampled_ggn_diagonal, sampled_ggn_from_vjp,
                                    softmax_ggn_diagonal)
from bayesnas_jax.spaces import nb201
from tests.spaces.nb201_support import float64 as _float64
from tests.spaces.nb201_support import nb201_config as _nb201


@pytest.fixture(scope="module")
def exact_problem(tiny_batch):
  """A tiny float64 NB201 network (origin on the output, scalars spread over
  0.3–1.2), its logits as a function of the scalars, and its exact
  `softmax_ggn_diagonal` (jitted: one compile instead of op-by-op dispatch),
  shared by the Jacobian check and the sampled estimate's tests."""
  config = _nb201(nb201.NB201_OPS, "output")
  images, _ = tiny_batch
  weights = _float64(nb201.init_weights(jax.random.PRNGKey(1), config))
  arch = jax.tree_util.tree_map(
      lambda a: a * jnp.linspace(0.3, 1.2, a.size).reshape(a.shape),
      _float64(nb201.init_arch(config)))
  logits_fn = lambda a: nb201.apply(weights, a, images, config)
  exact = np.asarray(jax.jit(
      lambda a: ravel_pytree(softmax_ggn_diagonal(logits_fn, a, chunk=7))[0])(arch))
  return logits_fn, arch, exact


def test_ggn_diagonal_matches_jacobian_reference(exact_problem):
  logits_fn, arch, ggn = exact_problem
  flat, unravel = ravel_pytree(arch)
  jac = jax.jit(jax.jacrev(lambda v: logits_fn(unravel(v))))(flat)  # [B, K, P]
  p = jax.nn.softmax(logits_fn(arch))
  # Jᵀ(diag p − ppᵀ)J per example, its diagonal, averaged over the batch.
  hess_out = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(p)
  full = jnp.einsum("bki,bkl,bli->bi", jac, hess_out, jac).mean(0)
  np.testing.assert_allclose(ggn, np.asarray(full), rtol=1e-9, atol=1e-14)
  assert np.all(ggn >= 0)
  assert ggn.max() > 1e-4  # not trivially zero


DRAWS = 1000


@pytest.fixture(scope="module")
def problem(exact_problem):
  logits_fn, arch, exact = exact_problem

  # One forward pass shared by all draws (the library's function for one
  # logits/VJP pair); one draw through the whole function checks the wiring.
  @functools.partial(jax.jit, static_argnums=1)
  def draws(keys, samples):
    logits, vjp_fn = jax.vjp(logits_fn, arch)
    return jax.vmap(lambda k: ravel_pytree(
        sampled_ggn_from_vjp(lambda u: vjp_fn(u)[0], logits, k, samples))[0])(keys)

  keys = jax.random.split(jax.random.PRNGKey(0), DRAWS)
  one = np.asarray(draws(keys, 1))
  four = np.asarray(draws(jax.random.split(jax.random.PRNGKey(1), DRAWS // 4), 4))
  np.testing.assert_allclose(
      np.asarray(jax.jit(lambda a, k: ravel_pytree(sampled_ggn_diagonal(logits_fn, a, k))[0])(
          arch, keys[3])), one[3], rtol=1e-10)
  return exact, one, four


def test_sampled_ggn_is_unbiased_under_batch_norm(problem):
  exact, values, _ = problem
  assert exact.max() > 1e-3  # not trivially zero
  assert np.all(values >= 0)
  mean = values.mean(0)
  se = values.std(0, ddof=1) / np.sqrt(DRAWS)
  z = (mean - exact) / se
  assert np.max(np.abs(z)) < 5.0, np.round(z, 2)


def test_sampled_ggn_variance_as_stated(problem):
  exact, one, four = problem
  one, four = one.std(0) / exact, four.std(0) / exact
  # χ²₁-like: relative sd √2 ≈ 1.41 for one draw (a sum of six terms here, so
  # not exactly Gaussian), and 1/√4 of it for the mean of four draws.
  assert 0.8 < np.median(one) < 1.7, np.round(one, 2)
  ratio = np.median(four / one)
  assert 0.4 < ratio < 0.6, ratio
