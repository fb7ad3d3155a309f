"""Convolutions (`bayesnas_jax.nn.conv`): the default implementation, and the curvature
of a convolution equal to that of a dense layer on image patches."""
import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import nn, value_grad_curvature
from tests import curvature_reference as ref
from tests.curvature_support import MODES, assert_trees_close, jit, random_arrays


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
