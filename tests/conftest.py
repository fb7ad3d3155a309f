"""Test-wide settings, and the fixtures that tests in several folders share.

* Float64 is enabled so curvature oracles can be checked at 1e-6 and tighter;
  library code takes its dtype from its inputs, so float32 tests still run
  float32.
* XLA compile time dominates these tiny problems, so the backend optimisation
  level is lowered (about 3× faster compiles), XLA's CPU fusion emitters are off
  (the older loop emitter compiles faster: the cold-cache suite took 8.9 min
  instead of 11.1 on this project's 2-core CPU, 2026-12-08, with every recorded
  result reproduced), and every compiled program, however small, goes to a
  persistent cache shared by the test workers and the CLI subprocesses that tests
  start (with a 0.5 s floor, the programs each CLI process compiles again cost
  16% more CPU in the CLI-heavy test files, measured 2026-12-08).
"""
import os
import tempfile

import numpy as np
import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "bayesnas_jax_test_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402  (after the environment above)
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)


# A tiny float64 batch of a 3-class problem: tests/spaces/test_nb201.py and
# tests/test_curvature_ggn.py.
@pytest.fixture(scope="module")
def tiny_batch():
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.standard_normal((6, 8, 8, 3)), jnp.float64)
  labels = jnp.asarray(rng.integers(0, 3, (6,)), jnp.int32)
  return images, labels
