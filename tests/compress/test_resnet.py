"""The ResNet-18 topology (`bayesnas_jax.compress.resnet`): the compressed network
equals the masked one and fully pruned blocks disappear; the CIFAR-10 config
names every prunable layer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax.compress import models


def _resnet_case():
  """A two-stage ResNet (identity and projection blocks) in float64 with
  non-trivial batch-norm parameters and running statistics."""
  from bayesnas_jax.compress import resnet  # pylint: disable=import-outside-toplevel
  model = resnet.ResNet18(stage_widths=(4, 6), num_classes=3)
  x = jax.random.normal(jax.random.key(0), (5, 8, 8, 3), jnp.float64)
  variables = model.init(jax.random.key(1), x)
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  leaves = [a.astype(jnp.float64) + 0.3 * jax.random.uniform(k, a.shape, jnp.float64)
            for a, k in zip(leaves, keys)]
  return model, x, jax.tree.unflatten(treedef, leaves)


def test_resnet_compressed_equals_masked_and_pruned_blocks_disappear():
  model, x, variables = _resnet_case()
  topology = models.topology(model)
  params = variables["params"]
  kernel_masks = {l.name: np.ones(params[l.name]["kernel"].shape, bool) for l in topology.layers}
  kernel_masks["s1b0_conv1"][...] = False       # identity block: every conv1 filter
  kernel_masks["s2b0_conv2"][...] = False       # projection block: every conv2 filter
  kernel_masks["s1b1_conv1"][..., 1] = False    # one filter
  kernel_masks["s1b1_conv2"][:, :, 2, :] = False  # conv1 filter 2 no longer read
  kernel_masks["s2b1_conv2"][..., [0, 5]] = False
  kernel_masks["s2b1_conv1"][1, 1, 3, :] = False  # a shape group
  kernel_masks["conv0"][..., 1] = False
  kernel_masks["fc"][[0, 4], :] = False
  masks, alive = topology.param_masks(kernel_masks, params)
  # The unread conv1 filter goes with its batch-norm entries; the projection
  # block's conv1 goes with its conv2; the stem filter's BN entries go.
  assert not masks["s1b1_conv1"]["kernel"][..., 2].any()
  np.testing.assert_array_equal(masks["s1b1_bn1"]["scale"], [True, False, False, True])
  assert not masks["s2b0_conv1"]["kernel"].any() and not masks["s2b0_bn2"]["bias"].any()
  assert not masks["bn0"]["bias"][1] and masks["bn0"]["bias"].sum() == 3
  assert topology.removed(alive) == ("s1b0", "s2b0")
  assert topology.architecture(alive) == "3-0/0-2/4-0/0-6/4-4"
  assert topology.parse("3-0/0-2/4-0/0-6/4-4")[("s1b1_conv1", "out")] == 2
  with pytest.raises(ValueError, match="config.compress.target_architecture"):
    topology.parse("3-2/4-4")
  full = {name: masks.get(name, jax.tree.map(np.ones_like, entry))
          for name, entry in params.items()}
  masked = jax.tree.map(lambda p, m: p * m, params, full)
  state = {"batch_stats": variables["batch_stats"]}
  small, small_params, small_state, description = topology.compress(masked, state, alive)
  assert description["removed"] == ["s1b0", "s2b0"]
  assert "s1b0_conv1" not in small_params and "s2b0_sc" in small_params
  assert small_params["s1b1_conv2"]["kernel"].shape == (3, 3, 2, 4)
  count = lambda tree: sum(np.size(a) for a in jax.tree.leaves(tree))  # noqa: E731
  assert count(small_params) < count(masked)
  for train in (False, True):  # running averages, and batch statistics
    np.testing.assert_allclose(
        small.apply({"params": small_params, **small_state}, x, train=train),
        model.apply({"params": masked, **state}, x, train=train), rtol=1e-10, atol=1e-10)


def test_resnet_config_names_every_prunable_layer():
  from configs import compress_resnet18_cifar10  # pylint: disable=import-outside-toplevel
  config = compress_resnet18_cifar10.get_config("cpu")
  topology = models.topology(models.make(config.model))
  convs = {l.name for l in topology.layers if not l.name.endswith("_sc")}
  assert set(config.compress.groups) == convs and len(convs) == 18
  assert config.compress.groups.fc == "row"
