"""The thesis' compression models as Flax modules of `bayesnas_jax.flax` layers.

Each model is a chain of layers described by `LAYERS` (name, kind, inputs per
unit of the previous layer): the structure the compression needs to carry a
pruned output unit of one layer to the inputs of the next. Widths are
attributes, and `input_index` / `flat_index` (sorted input units that survive),
so a physically compressed network is the same module with smaller widths.

* `LeNet300`: 784-300-100-10, ReLU (LeCun et al. 1998).
* `LeNet5`: Caffe's LeNet-5, 20 5×5 VALID filters → max-pool 2 → 50 5×5 filters →
  max-pool 2 → 800 → 500 (ReLU) → 10; "20-50-800-500".
* `resnet.ResNet18`: CIFAR ResNet-18 with batch norm and residual blocks
  (`resnet.Topology`).

`topology(model)` gives the interface the compression run uses for all three.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as linen
import jax.numpy as jnp

from bayesnas_jax import flax as bnf
from bayesnas_jax import nn
from bayesnas_jax.compress import resnet, structure
from bayesnas_jax.compress.structure import Layer

MODELS = ("lenet300", "lenet5", "resnet18")


def _flatten(x):
  return nn.structural(lambda v: v.reshape(v.shape[0], -1), x)


def _select(x, index):
  if index is None:
    return x
  return nn.structural(lambda v: jnp.take(v, jnp.asarray(index), axis=-1), x)


class LeNet300(linen.Module):
  hidden: Sequence[int] = (300, 100)
  num_classes: int = 10
  input_index: tuple | None = None

  @linen.compact
  def __call__(self, x, train: bool = True):
    del train  # no batch norm
    x = _select(_flatten(x), self.input_index)
    for width in self.hidden:
      x = nn.relu(bnf.Dense(width)(x))
    return bnf.Dense(self.num_classes)(x)


class LeNet5(linen.Module):
  filters: Sequence[int] = (20, 50)
  hidden: int = 500
  num_classes: int = 10
  flat_index: tuple | None = None

  @linen.compact
  def __call__(self, x, train: bool = True):
    del train  # no batch norm
    for width in self.filters:
      x = nn.max_pool(bnf.Conv(width, 5, padding="VALID")(x), 2, 2)
    x = _select(_flatten(x), self.flat_index)
    x = nn.relu(bnf.Dense(self.hidden)(x))
    return bnf.Dense(self.num_classes)(x)


def layers(model):
  """The chain of `Layer`s of `model`, in order."""
  if isinstance(model, LeNet300):
    return [Layer(f"Dense_{i}", "dense", 1) for i in range(len(model.hidden) + 1)]
  # 28 → 24 → 12 → 8 → 4: each conv2 filter feeds 4·4 inputs of Dense_0.
  return [Layer("Conv_0", "conv", 1), Layer("Conv_1", "conv", 1),
          Layer("Dense_0", "dense", 16), Layer("Dense_1", "dense", 1)]


def shrunk(model, widths, input_index=None, flat_index=None):
  """The same model with the compressed widths (`structure.compress`)."""
  if isinstance(model, LeNet300):
    return LeNet300(hidden=tuple(widths), num_classes=model.num_classes,
                    input_index=input_index, parent=None)
  return LeNet5(filters=tuple(widths[:2]), hidden=widths[2], num_classes=model.num_classes,
                flat_index=flat_index, parent=None)


class ChainTopology:
  """The layers of a LeNet and the structural consequences of their masks
  (`structure.unit_masks`); the interface `run` uses for every model
  (`resnet.Topology` for ResNet-18)."""

  def __init__(self, model):
    self.model = model
    self.layers = layers(model)

  def param_masks(self, kernel_masks, params):
    """(masks of every parameter, alive): `alive[layer] = (inputs, outputs)` used."""
    bias_present = {layer.name: "bias" in params[layer.name] for layer in self.layers}
    unit, bias, out_alive, in_alive = structure.unit_masks(self.layers, kernel_masks,
                                                           bias_present)
    masks = {layer.name: {"kernel": unit[layer.name],
                          **({"bias": bias[layer.name]} if layer.name in bias else {})}
             for layer in self.layers}
    return masks, {layer.name: (in_alive[layer.name], out_alive[layer.name])
                   for layer in self.layers}

  @staticmethod
  def _split(alive):
    return ({name: a[1] for name, a in alive.items()}, {name: a[0] for name, a in alive.items()})

  def architecture(self, alive):
    return structure.architecture_string(self.layers, *self._split(alive))

  def parse(self, text):
    return structure.parse_architecture(self.layers, text)

  def removed(self, alive):
    del alive
    return ()

  def compress(self, params, state, alive):
    """(smaller model, its params, its other collections, a JSON description)."""
    del state
    out_alive, in_alive = self._split(alive)
    small_params, widths, input_index, flat_index = structure.compress(
        self.layers, params, out_alive, in_alive)
    small = shrunk(self.model, widths, input_index, flat_index)
    name = "lenet300" if isinstance(self.model, LeNet300) else "lenet5"
    return small, small_params, {}, {"model": name, "widths": widths,
                                     "input_index": input_index, "flat_index": flat_index}


def topology(model):
  """The `ChainTopology` or `resnet.Topology` of `model`."""
  if isinstance(model, resnet.ResNet18):
    return resnet.Topology(model)
  return ChainTopology(model)


def make(model_config):
  name = model_config.name
  if name == "lenet300":
    return LeNet300(num_classes=model_config.num_classes)
  if name == "lenet5":
    return LeNet5(num_classes=model_config.num_classes)
  if name == "resnet18":
    widths = tuple(model_config.get("stage_widths", resnet.STAGE_WIDTHS))
    if len(widths) < 1 or min(widths) < 1:
      raise ValueError(f"config.model.stage_widths: expected positive widths, got {widths!r}")
    return resnet.ResNet18(stage_widths=widths,
                           blocks_per_stage=int(model_config.get("blocks_per_stage", 2)),
                           num_classes=model_config.num_classes)
  raise ValueError(f"config.model.name: expected one of {MODELS}, got {name!r}")
