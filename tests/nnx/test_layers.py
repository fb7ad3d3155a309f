"""`bayesnas_jax.nnx` layers: each equals its `flax.nnx` namesake in initial
values (same `nnx.Rngs`), value, gradients and batch-norm statistics, with and
without jit (`chex.variants`), in float64; unsupported options name the field."""
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import nnx

from bayesnas_jax import nnx as bnx
from tests.tests_support import perturbed

# flax.nnx.BatchNorm keeps float32 averages; a float64 input updates them with a
# float64 value (both libraries alike), which JAX warns about.
pytestmark = pytest.mark.filterwarnings("ignore:scatter inputs have incompatible types")

F64 = jnp.float64
X = jax.random.normal(jax.random.key(0), (3, 6, 6, 4), F64)

# name: (class name, positional arguments, keyword arguments)
LAYERS = {
    "linear": ("Linear", (4, 5), {}),
    "conv_stride2_groups2": ("Conv", (4, 8, (3, 3)), dict(strides=2, feature_group_count=2)),
    "conv_dilated_1x3": ("Conv", (4, 6, (1, 3)), dict(kernel_dilation=2, use_bias=False)),
    "conv_valid_5x5_stride2": ("Conv", (4, 3, (5, 5)), dict(strides=2, padding="VALID")),
    "conv_depthwise": ("Conv", (4, 4, (3, 3)), dict(feature_group_count=4)),
    "batch_norm_train": ("BatchNorm", (4,), dict(momentum=0.9)),
    "batch_norm_eval": ("BatchNorm", (4,), dict(use_running_average=True)),
}


def _pair(name):
  cls, args, kwargs = LAYERS[name]
  return tuple(getattr(module, cls)(*args, param_dtype=F64, rngs=nnx.Rngs(1), **kwargs)
               for module in (bnx, nnx))


class LayersMatchNNX(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(name, name) for name in LAYERS])
  def test_value_gradient_and_state(self, name):
    ours, theirs = _pair(name)
    assert isinstance(ours, type(theirs))
    chex.assert_trees_all_equal(nnx.state(ours), nnx.state(theirs))  # same Rngs, same values
    _, params, rest = nnx.split(theirs, nnx.Param, ...)
    params, rest = perturbed(params), perturbed(rest)

    def run(layer):
      graphdef = nnx.graphdef(layer)

      def loss(params_, x, rest_):
        # Fresh variables of this trace: BatchNorm writes its averages into them.
        model = nnx.merge(graphdef, params_, jax.tree.map(lambda v: v, rest_))
        return jnp.sum(jnp.sin(model(x))), nnx.state(model, nnx.BatchStat)
      return self.variant(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
          params, X, rest)

    (value, stats), grads = run(ours)
    (value_ref, stats_ref), grads_ref = run(theirs)
    np.testing.assert_allclose(value, value_ref, rtol=1e-10)
    chex.assert_trees_all_close(grads, grads_ref, rtol=1e-9, atol=1e-12)
    chex.assert_trees_all_close(stats, stats_ref, rtol=1e-6, atol=1e-7)  # float32 averages
    if name == "batch_norm_train":  # the averages moved, so the comparison above meant something
      assert not np.allclose(stats["mean"][...], rest["mean"][...])


def test_signatures_are_flax_nnx_ones():
  for name in ("Linear", "Conv", "BatchNorm"):
    assert (inspect.signature(getattr(bnx, name).__init__)
            == inspect.signature(getattr(nnx, name).__init__)), name


@pytest.mark.parametrize("make, field", [
    (lambda r: bnx.Conv(4, 4, (3, 3), padding="CIRCULAR", rngs=r), "Conv.padding"),
    (lambda r: bnx.Conv(4, 4, 3, rngs=r), "Conv.kernel_size"),  # an int is 1-D in nnx
    (lambda r: bnx.Conv(4, 4, (3, 3), strides=(1, 2, 1), rngs=r), "Conv.strides"),
    (lambda r: bnx.Conv(4, 4, (3, 3), mask=jnp.ones((3, 3, 4, 4)), rngs=r), "Conv.mask"),
    (lambda r: bnx.Linear(4, 4, precision=jax.lax.Precision.HIGHEST, rngs=r),
     "Linear.precision"),
    (lambda r: bnx.BatchNorm(4, axis_name="batch", rngs=r), "BatchNorm.axis_name"),
])
def test_unsupported_options_name_the_field(make, field):
  with pytest.raises(ValueError) as err:
    make(nnx.Rngs(0))
  assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_unsupported_call_options_name_the_field():
  rngs = nnx.Rngs(0)
  for call, field in (
      (lambda: bnx.Conv(4, 3, (3, 3), feature_group_count=3, rngs=rngs)(X),
       "Conv.feature_group_count"),
      (lambda: bnx.BatchNorm(6, axis=1, rngs=rngs)(X), "BatchNorm.axis"),
      (lambda: bnx.BatchNorm(4, use_running_average=None, rngs=rngs)(X),
       "BatchNorm.use_running_average")):
    with pytest.raises(ValueError) as err:
      call()
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
