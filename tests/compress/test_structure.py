"""Structural consequences of pruned groups (`bayesnas_jax.compress.structure`): the
physically smaller LeNet equals the masked one, pruned units propagate both ways,
and the magnitude selection keeps its counts."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bayesnas_jax.compress import groups, models, structure


def _model(name):
  return models.make(ml_collections.ConfigDict({"name": name, "num_classes": 10}))


def _random_masks(model, params, seed, fraction):
  rng = np.random.default_rng(seed)
  out = {}
  for layer in models.layers(model):
    kernel = params[layer.name]["kernel"]
    kinds = ["column", "row"] if layer.kind == "dense" else ["filter", "shape"]
    state = groups.init_state(kernel.shape, kinds)
    state = state.replace(keep={kind: jnp.asarray(rng.random(state.keep[kind].shape) > fraction)
                                for kind in kinds})
    out[layer.name] = np.asarray(groups.mask(kernel.shape, state))
  return out


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_compressed_network_equals_the_masked_one(name):
  model = _model(name)
  x = jax.random.normal(jax.random.key(0), (3, 28, 28, 1), jnp.float64)
  params = jax.tree.map(lambda a: a.astype(jnp.float64) + 0.01,
                        model.init(jax.random.key(1), x)["params"])
  layers = models.layers(model)
  kernel_masks, bias_masks, out_alive, in_alive = structure.unit_masks(
      layers, _random_masks(model, params, 0, 0.1), {l.name: True for l in layers})
  masked = {l.name: {"kernel": params[l.name]["kernel"] * kernel_masks[l.name],
                     "bias": params[l.name]["bias"] * bias_masks[l.name]} for l in layers}
  small_params, widths, input_index, flat_index = structure.compress(layers, masked, out_alive,
                                                                     in_alive)
  small = models.shrunk(model, widths, input_index, flat_index)
  full_width = [np.size(out_alive[l.name]) for l in layers[:-1]]
  assert all(w < f for w, f in zip(widths, full_width))  # really smaller
  np.testing.assert_allclose(small.apply({"params": small_params}, x),
                             model.apply({"params": masked}, x), rtol=1e-12, atol=1e-12)
  arch = structure.architecture_string(layers, out_alive, in_alive)
  numbers = [int(v) for v in arch.split("-")]
  if name == "lenet300":  # inputs, then the hidden widths
    assert numbers == [len(input_index)] + widths
  else:  # filters, filters, dense inputs, dense outputs
    assert numbers == widths[:2] + [len(flat_index)] + widths[2:]


def test_pruned_units_propagate_both_ways():
  model = _model("lenet5")
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
  layers = models.layers(model)
  masks = {l.name: np.ones(params[l.name]["kernel"].shape, bool) for l in layers}
  channels = 50
  masks["Dense_0"][np.arange(800) % channels == 3, :] = False  # every input of channel 3
  masks["Conv_1"][..., 7] = False                             # filter 7
  kernel_masks, bias_masks, out_alive, in_alive = structure.unit_masks(
      layers, masks, {l.name: True for l in layers})
  assert not out_alive["Conv_1"][3] and not bias_masks["Conv_1"][3]
  assert not np.any(kernel_masks["Conv_1"][..., 3])   # channel 3 unused → filter 3 gone
  assert not np.any(kernel_masks["Dense_0"][np.arange(800) % channels == 7, :])  # and back
  assert structure.architecture_string(layers, out_alive, in_alive) == "20-48-768-500"


def test_magnitude_selection_keeps_its_counts_after_a_flatten():
  """A dense layer's input rows are chosen among those that read a kept filter,
  so after the structural consequences the kept counts are still the asked ones
  (here the largest dense rows read the smallest filters)."""
  from bayesnas_jax.compress import structure  # pylint: disable=import-outside-toplevel
  layers = [structure.Layer("Conv_0", "conv", 1), structure.Layer("Dense_0", "dense", 2),
            structure.Layer("Dense_1", "dense", 1)]
  conv = np.zeros((1, 1, 1, 4))
  conv[..., :] = [4.0, 3.0, 2.0, 1.0]            # filters 0 and 1 are kept
  dense = np.ones((8, 5)) * np.asarray([1, 1, 9, 9, 1, 1, 9, 9])[:, None]  # row p·4 + c
  dense[0] = 2.0                                  # channel 0, position 0: the best live row
  out = np.ones((5, 3))
  counts = {("Conv_0", "out"): 2, ("Dense_0", "in"): 3, ("Dense_0", "out"): 5}
  masks = structure.select_by_norm(layers, {"Conv_0": conv, "Dense_0": dense,
                                            "Dense_1": out}, counts)
  rows = np.flatnonzero(masks["Dense_0"].any(axis=1))
  assert len(rows) == 3 and set(rows % 4) <= {0, 1} and 0 in rows
  _, _, _, in_alive = structure.unit_masks(layers, masks, {})
  assert int(in_alive["Dense_0"].sum()) == 3
