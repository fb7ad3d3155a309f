"""Comparison helpers shared by the curvature-engine tests (tests/test_curvature.py,
tests/nn/test_rules.py, tests/nn/test_conv.py)."""
import functools

import jax
import numpy as np

MODES = ("hessian", "ggn")
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


def random_arrays(seed, **shapes):
  rng = np.random.default_rng(seed)
  return {k: rng.normal(size=shape) for k, shape in shapes.items()}
