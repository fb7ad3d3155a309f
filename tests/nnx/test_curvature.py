"""`bayesnas_jax.nnx.value_grad_curvature`: a small NNX model's gradients equal
NNX's, its curvature equals that of the same model written with
`bayesnas_jax.nn` primitives, and where the diagonal recursion is exact (the
parameters at the output, under MSE) it equals `exact_diagonal`. Bad input
gives one line naming what was expected."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bayesnas_jax import exact_diagonal, nn, value_grad_curvature
from bayesnas_jax import nnx as bnx
from tests.curvature_support import MODES, jit

# flax.nnx.BatchNorm keeps float32 averages; a float64 input updates them with a
# float64 value (both libraries alike), which JAX warns about.
pytestmark = pytest.mark.filterwarnings("ignore:scatter inputs have incompatible types")

F64 = jnp.float64
X = jax.random.normal(jax.random.key(0), (3, 6, 6, 4), F64)
TARGET = jax.random.normal(jax.random.key(1), (3, 2), F64)
BOTH = (nnx.Param, bnx.ArchParam)


class Net(nnx.Module):
  def __init__(self, rngs):
    self.conv = bnx.Conv(4, 4, (3, 3), strides=2, param_dtype=F64, rngs=rngs)
    self.bn = bnx.BatchNorm(4, use_scale=False, use_bias=False, rngs=rngs)
    # Explicit padding takes the lax.conv_general_dilated path; the primitive
    # model below computes the same convolution with nn.conv2d.
    self.mix = bnx.MixedOp([
        bnx.Conv(4, 4, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, param_dtype=F64,
                 rngs=rngs),
        lambda z: nn.avg_pool(z, 3, 1)], param_dtype=F64)
    self.head = bnx.Linear(4, 2, param_dtype=F64, rngs=rngs)
    self.out = bnx.ArchScale(param_dtype=F64)

  def __call__(self, x):
    x = self.bn(nn.relu(self.conv(x)))
    return self.out(self.head(nn.global_avg_pool(self.mix(x))))


def primitives(p, x):
  """Net written with `bayesnas_jax.nn` functions on its pure dict."""
  x = nn.batch_norm(nn.relu(nn.conv2d(x, p["conv"]["kernel"], stride=2,
                                      b=p["conv"]["bias"])))
  w = p["mix"]["w"]
  x = nn.add(nn.scale(nn.conv2d(x, p["mix"]["ops"][0]["kernel"]), w[0]),
             nn.scale(nn.avg_pool(x, 3, 1), w[1]))
  x = nn.dense(nn.global_avg_pool(x), p["head"]["kernel"], p["head"]["bias"])
  return nn.scale(x, p["out"]["w"])


def mse(model, x, t):
  return nn.mean_squared_error(model(x), t)


@pytest.fixture(scope="module")
def results():
  """Everything the tests compare, from one compiled function."""
  model = Net(nnx.Rngs(0))
  graphdef, state = nnx.split(model)

  @jit
  def run(state):
    ours = {}
    for mode in MODES:
      model = nnx.merge(graphdef, state)
      ours[mode] = bnx.value_grad_curvature(mse, model, X, TARGET, wrt=BOTH, mode=mode)
    stats = nnx.state(model, nnx.BatchStat)  # written back by the last call
    model = nnx.merge(graphdef, state)
    reference = nnx.value_and_grad(mse, argnums=nnx.DiffState(0, BOTH))(model, X, TARGET)
    pure = nnx.to_pure_dict(nnx.state(model, BOTH))
    loss = lambda p: nn.mean_squared_error(primitives(p, X), TARGET)
    prims = {mode: value_grad_curvature(loss, pure, mode=mode) for mode in MODES}
    exact = {key: exact_diagonal(loss, pure, wrt=key)
             for key in (("head", "kernel"), ("head", "bias"), ("out", "w"))}
    return ours, stats, reference, nnx.state(model, nnx.BatchStat), prims, exact
  return run(state)


def test_gradients_and_state_are_nnx_ones(results):
  ours, stats, (loss_ref, grads_ref), stats_ref, _, _ = results
  for mode in MODES:
    loss, grads, curvature = ours[mode]
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    assert jax.tree.structure(grads) == jax.tree.structure(grads_ref)
    assert jax.tree.structure(curvature) == jax.tree.structure(grads_ref)
    chex.assert_trees_all_close(grads, grads_ref, rtol=1e-9, atol=1e-14)
  # The batch-norm averages are written back to the model, as nnx.value_and_grad does.
  chex.assert_trees_all_close(stats, stats_ref, rtol=1e-6)
  assert not np.allclose(stats["bn"]["mean"][...], 0)


def test_curvature_equals_the_primitive_model(results):
  ours, _, _, _, prims, _ = results
  for mode in MODES:
    _, grads, curvature = prims[mode]
    chex.assert_trees_all_close(nnx.to_pure_dict(ours[mode][1]), grads, rtol=1e-9,
                                atol=1e-14)
    chex.assert_trees_all_close(nnx.to_pure_dict(ours[mode][2]), curvature, rtol=1e-9,
                                atol=1e-14)
    assert np.all(curvature["mix"]["w"] > 0)


def test_output_parameters_are_exact_under_mse(results):
  ours, _, _, _, _, exact = results
  for mode in MODES:
    curvature = nnx.to_pure_dict(ours[mode][2])
    for (module, name), want in exact.items():
      np.testing.assert_allclose(curvature[module][name], want, rtol=1e-8,
                                 err_msg=f"{mode} {module}/{name}")
      assert np.all(np.abs(want) > 0)


class _Plain(nnx.Module):
  def __init__(self, rngs):
    self.head = bnx.Linear(4, 2, param_dtype=F64, rngs=rngs)

  def __call__(self, x):
    return self.head(nn.global_avg_pool(x))


def test_a_model_without_arch_params_names_what_was_expected():
  model = _Plain(nnx.Rngs(0))
  for call in (lambda: bnx.value_grad_curvature(mse, model, X, TARGET, wrt=bnx.ArchParam),
               lambda: bnx.arch_mask(model)):
    with pytest.raises(ValueError, match="expected at least one") as err:
      call()
    assert "ArchParam" in str(err.value) and "\n" not in str(err.value)


def test_a_non_float_scalar_names_what_was_expected():
  model = _Plain(nnx.Rngs(0))
  model.gate = bnx.ArchParam(jnp.ones((), jnp.int32))
  with pytest.raises(ValueError, match="'gate' has dtype int32; expected a float") as err:
    bnx.value_grad_curvature(mse, model, X, TARGET, wrt=bnx.ArchParam)
  assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="MixedOp.param_dtype: expected a float dtype"):
    bnx.MixedOp([nn.relu], param_dtype=jnp.int32)
