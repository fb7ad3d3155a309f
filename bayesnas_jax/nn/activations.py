"""Element-wise non-linearities with their first and second derivatives.

In mode "hessian" the curvature recursion adds σ''(h)·∂L/∂a (thesis eq. 4-10);
in mode "ggn" it keeps only σ'(h)² H_a.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bayesnas_jax.nn.rules import Elementwise, elementwise


def _tanh_first(h):
  t = jnp.tanh(h)
  return 1 - t * t


def _tanh_second(h):
  t = jnp.tanh(h)
  return -2 * t * (1 - t * t)


def _sigmoid_first(h):
  s = jax.nn.sigmoid(h)
  return s * (1 - s)


def _sigmoid_second(h):
  s = jax.nn.sigmoid(h)
  return s * (1 - s) * (1 - 2 * s)


RELU = Elementwise(jax.nn.relu, lambda h: (h > 0).astype(h.dtype), jnp.zeros_like)
TANH = Elementwise(jnp.tanh, _tanh_first, _tanh_second)
SIGMOID = Elementwise(jax.nn.sigmoid, _sigmoid_first, _sigmoid_second)


def relu(x):
  return elementwise(RELU, x)


def tanh(x):
  return elementwise(TANH, x)


def sigmoid(x):
  return elementwise(SIGMOID, x)


def identity(x):
  return x


ACTIVATIONS = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid, "identity": identity}
