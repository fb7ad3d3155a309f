"""`bayesnas_jax.flax`: each layer equals its `flax.linen` namesake in value and
gradient (with and without jit, `chex.variants`), and the curvature of a model
built from them equals that of the same model written with `bayesnas_jax.nn`."""
import chex
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from bayesnas_jax import flax as bnf
from bayesnas_jax import nn, value_grad_curvature
from tests.tests_support import perturbed

F64 = jnp.float64
X = jax.random.normal(jax.random.key(0), (3, 6, 6, 4), F64)

LAYERS = {
    "dense": (lambda: bnf.Dense(5, param_dtype=F64), lambda: linen.Dense(5, param_dtype=F64)),
    "conv_stride2_groups2": (
        lambda: bnf.Conv(8, 3, strides=2, feature_group_count=2, param_dtype=F64),
        lambda: linen.Conv(8, (3, 3), strides=2, feature_group_count=2, param_dtype=F64)),
    "conv_dilated_1x3": (
        lambda: bnf.Conv(6, (1, 3), kernel_dilation=2, use_bias=False, param_dtype=F64),
        lambda: linen.Conv(6, (1, 3), kernel_dilation=2, use_bias=False, param_dtype=F64)),
    "conv_valid_5x5": (
        lambda: bnf.Conv(3, 5, padding="VALID", param_dtype=F64),
        lambda: linen.Conv(3, (5, 5), padding="VALID", param_dtype=F64)),
    "conv_explicit_pads_strides_2x1": (  # lax.conv_general_dilated under nn.bilinear
        lambda: bnf.Conv(4, (3, 2), strides=(2, 1), padding=((2, 0), (1, 1)),
                         kernel_dilation=(1, 2), param_dtype=F64),
        lambda: linen.Conv(4, (3, 2), strides=(2, 1), padding=((2, 0), (1, 1)),
                           kernel_dilation=(1, 2), param_dtype=F64)),
    "conv_depthwise": (
        lambda: bnf.Conv(4, 3, feature_group_count=4, param_dtype=F64),
        lambda: linen.Conv(4, (3, 3), feature_group_count=4, param_dtype=F64)),
    "batch_norm_train": (
        lambda: bnf.BatchNorm(use_running_average=False, momentum=0.9, param_dtype=F64),
        lambda: linen.BatchNorm(use_running_average=False, momentum=0.9, param_dtype=F64)),
    "batch_norm_eval": (
        lambda: bnf.BatchNorm(use_running_average=True, param_dtype=F64),
        lambda: linen.BatchNorm(use_running_average=True, param_dtype=F64)),
}


class LayersMatchLinen(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(name, name) for name in LAYERS])
  def test_value_gradient_and_state(self, name):
    ours, theirs = (make() for make in LAYERS[name])
    variables = theirs.init(jax.random.key(1), X)
    chex.assert_trees_all_equal(ours.init(jax.random.key(1), X), variables)
    variables = perturbed(variables)

    def run(model):
      def loss(params):
        out, new = model.apply({**variables, "params": params}, X, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(out)), new
      return self.variant(jax.value_and_grad(loss, has_aux=True))(variables["params"])

    (value, state), grads = run(ours)
    (value_ref, state_ref), grads_ref = run(theirs)
    np.testing.assert_allclose(value, value_ref, rtol=1e-10)
    chex.assert_trees_all_close(grads, grads_ref, rtol=1e-9, atol=1e-12)
    chex.assert_trees_all_close(state, state_ref, rtol=1e-9, atol=1e-12)


def _model_of_layers():
  class Net(linen.Module):
    @linen.compact
    def __call__(self, x):
      x = nn.relu(bnf.Conv(4, 3, strides=2)(x))
      x = bnf.BatchNorm(use_running_average=False, use_scale=False, use_bias=False)(x)
      x = bnf.MixedOp([bnf.Conv(4, 3, use_bias=False), lambda z: nn.avg_pool(z, 3, 1)])(x)
      x = bnf.ArchScale()(nn.global_avg_pool(x))
      return bnf.Dense(3)(x)
  return Net()


def _model_of_primitives(variables, x):
  p, a = variables["params"], variables["arch"]
  x = nn.relu(nn.conv2d(x, p["Conv_0"]["kernel"], stride=2, b=p["Conv_0"]["bias"]))
  x = nn.batch_norm(x)
  w = a["MixedOp_0"]["w"]
  x = nn.add(nn.scale(nn.conv2d(x, p["Conv_1"]["kernel"]), w[0]),
             nn.scale(nn.avg_pool(x, 3, 1), w[1]))
  x = nn.scale(nn.global_avg_pool(x), a["ArchScale_0"]["w"])
  return nn.dense(x, p["Dense_0"]["kernel"], p["Dense_0"]["bias"])


def test_model_curvature_equals_primitives_and_arch_is_its_own_collection():
  model = _model_of_layers()
  variables = jax.tree.map(lambda v: v.astype(F64), model.init(jax.random.key(3), X))
  assert set(variables) == {"params", "arch", "batch_stats"}
  chex.assert_shape(variables["arch"]["MixedOp_0"]["w"], (2,))
  chex.assert_shape(variables["arch"]["ArchScale_0"]["w"], ())
  labels = jnp.arange(3)
  mask = {"params": True, "arch": True, "batch_stats": False}
  for mode in ("hessian", "ggn"):
    got = value_grad_curvature(
        lambda v: nn.softmax_cross_entropy(model.apply(v, X), labels), variables,
        mode=mode, probe_mask=mask)
    want = value_grad_curvature(
        lambda v: nn.softmax_cross_entropy(_model_of_primitives(v, X), labels),
        {"params": variables["params"], "arch": variables["arch"]}, mode=mode)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    for i in (1, 2):  # gradients, then curvature
      chex.assert_trees_all_close({k: got[i][k] for k in ("params", "arch")}, want[i],
                                  rtol=1e-9, atol=1e-14)
    assert float(jnp.sum(want[2]["arch"]["MixedOp_0"]["w"])) > 0


def test_unsupported_options_name_the_field():
  for layer, field in ((bnf.Conv(4, 3, padding="CIRCULAR"), "Conv.padding"),
                       (bnf.Conv(4, (3, 3, 3)), "Conv.kernel_size"),
                       (bnf.Conv(4, 3, strides=(1, 2, 1)), "Conv.strides"),
                       (bnf.Conv(4, 3, feature_group_count=3), "Conv.feature_group_count")):
    try:
      layer.init(jax.random.key(0), X)
    except ValueError as err:
      assert str(err).startswith(field) and "\n" not in str(err)
    else:
      raise AssertionError(f"{field}: no error")
