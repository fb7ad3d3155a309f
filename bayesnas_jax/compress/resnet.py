"""CIFAR ResNet-18 for structured compression (thesis (T) App. A-2-2), and what
pruning its groups removes.

The network (He et al. 2016, CIFAR form): a 3×3 input convolution (`conv0`,
`bn0`), four stages of two basic blocks (`s{stage}b{block}_conv1/bn1/conv2/bn2`,
and a 1×1 projection `…_sc/scbn` where a block changes width or stride), global
average pooling and `fc`. Convolutions have no bias; each is followed by batch
norm. Parameters are flat, one entry per layer, so groups and masks name layers
directly.

What a pruned group takes with it (`Topology.param_masks`):

* a filter (output channel) of any convolution that keeps no weight is dead: its
  batch-norm scale and bias are masked too, so the channel is exactly 0 in
  training and inference alike;
* inside a block, a `conv1` filter that `conv2` no longer reads is dead, and the
  `conv2` inputs that read a dead `conv1` filter are masked;
* a block with no live `conv1` or `conv2` filter has no residual branch left: it
  is removed. With an identity shortcut the block becomes the identity (its input
  is already ≥ 0 after the previous ReLU); with a projection shortcut only the
  projection remains.

The residual stream's width is not reduced — each of its channels is the sum of
several layers' outputs. The compressed network (`Topology.compress`) drops dead
filters from every kernel and places the live outputs of stream-writing layers
(`conv0`, `conv2`, projections) back at their channels, reads only the stream
channels a `conv1`, projection or `fc` still uses, and leaves out removed blocks.
Its output equals the masked network's.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as linen
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import flax as bnf
from bayesnas_jax import nn
from bayesnas_jax.compress import structure

STAGE_WIDTHS = (64, 128, 256, 512)


def block_names(stages, blocks_per_stage):
  return [f"s{s + 1}b{b}" for s in range(stages) for b in range(blocks_per_stage)]


def _take(x, index):
  if index is None:
    return x
  return nn.structural(lambda v: jnp.take(v, jnp.asarray(index), axis=-1), x)


def _place(x, index, width):
  """Channels of `x` put at `index` of a `width`-channel map, zeros elsewhere."""
  if index is None:
    return x
  idx = jnp.asarray(index)
  return nn.structural(
      lambda v: jnp.zeros(v.shape[:-1] + (width,), v.dtype).at[..., idx].set(v), x)


class ResNet18(linen.Module):
  """CIFAR ResNet-18. `keep` ((layer, in_index, out_index), …) and `removed`
  (block names) describe a compressed network (`Topology.compress`): a layer
  reads only the input channels `in_index`, has `len(out_index)` filters, and a
  stream-writing layer puts them at `out_index`. Empty for the dense network."""
  stage_widths: Sequence[int] = STAGE_WIDTHS
  blocks_per_stage: int = 2
  num_classes: int = 10
  keep: tuple = ()
  removed: tuple = ()

  @linen.compact
  def __call__(self, x, train: bool = True):
    spec = {name: (i, o) for name, i, o in self.keep}

    def conv_bn(name, bn_name, h, features, kernel, stride, place=True):
      in_index, out_index = spec.get(name, (None, None))
      width = features if out_index is None else len(out_index)
      y = bnf.Conv(width, kernel, strides=stride, use_bias=False, name=name)(_take(h, in_index))
      y = bnf.BatchNorm(use_running_average=not train, momentum=0.9, name=bn_name)(y)
      return _place(y, out_index, features) if place else y

    h = nn.relu(conv_bn("conv0", "bn0", x, self.stage_widths[0], 3, 1))
    width = self.stage_widths[0]
    for s, features in enumerate(self.stage_widths):
      for b in range(self.blocks_per_stage):
        name = f"s{s + 1}b{b}"
        stride = 2 if (s > 0 and b == 0) else 1
        projection = stride != 1 or width != features
        shortcut = (conv_bn(f"{name}_sc", f"{name}_scbn", h, features, 1, stride)
                    if projection else h)
        if name in self.removed:
          h = nn.relu(shortcut) if projection else h
        else:
          y = nn.relu(conv_bn(f"{name}_conv1", f"{name}_bn1", h, features, 3, stride,
                              place=False))
          y = conv_bn(f"{name}_conv2", f"{name}_bn2", y, features, 3, 1)
          h = nn.relu(nn.add(y, shortcut))
        width = features
    h = _take(nn.global_avg_pool(h), spec.get("fc", (None, None))[0])
    return bnf.Dense(self.num_classes, name="fc")(h)


class Topology:
  """The prunable layers of a `ResNet18` and the structural consequences of
  their masks (the chain of `structure` for LeNets)."""

  def __init__(self, model: ResNet18):
    self.model = model
    self.blocks = block_names(len(model.stage_widths), model.blocks_per_stage)
    self.layers = [structure.Layer("conv0", "conv", 1)]
    self.projections = []
    width = model.stage_widths[0]
    for s, features in enumerate(model.stage_widths):
      for b in range(model.blocks_per_stage):
        name = f"s{s + 1}b{b}"
        self.layers += [structure.Layer(f"{name}_conv1", "conv", 1),
                        structure.Layer(f"{name}_conv2", "conv", 1)]
        if (s > 0 and b == 0) or width != features:
          self.layers.append(structure.Layer(f"{name}_sc", "conv", 1))
          self.projections.append(name)
        width = features
    self.layers.append(structure.Layer("fc", "dense", 1))
    self.bn_of = {"conv0": "bn0"}
    for name in self.blocks:
      self.bn_of.update({f"{name}_conv1": f"{name}_bn1", f"{name}_conv2": f"{name}_bn2",
                         f"{name}_sc": f"{name}_scbn"})

  def param_masks(self, kernel_masks, params):
    """(masks of every parameter, alive): `alive[layer] = (inputs, filters)` used."""
    masks = {name: np.asarray(m, bool).copy() for name, m in kernel_masks.items()}
    for name in self.blocks:
      c1, c2 = masks[f"{name}_conv1"], masks[f"{name}_conv2"]
      changed = True
      while changed:
        # conv1 filters: with a weight left, and read by conv2.
        alive1 = c1.any(axis=(0, 1, 2)) & c2.any(axis=(0, 1, 3))
        alive2 = c2.any(axis=(0, 1, 2))
        before = (c1.sum(), c2.sum())
        c1[..., ~alive1] = False
        c2[:, :, ~alive1, :] = False
        c2[..., ~alive2] = False
        changed = before != (c1.sum(), c2.sum())
    alive = {}
    for layer in self.layers:
      m = masks[layer.name]
      unit_in = structure.IN_AXIS[layer.kind]
      inputs = m.any(axis=tuple(a for a in range(m.ndim) if a != unit_in))
      filters = m.any(axis=tuple(range(m.ndim - 1)))
      if layer.name == "fc":
        filters = np.ones_like(filters)  # the logits stay
      alive[layer.name] = (inputs, filters)
    out = {}
    for name, entry in params.items():
      if name in masks:
        out[name] = {"kernel": masks[name]}
        if "bias" in entry:
          out[name]["bias"] = alive[name][1].copy()
    for conv, bn in self.bn_of.items():
      if bn in params:
        out[bn] = {key: alive[conv][1].copy() for key in params[bn]}
    return out, alive

  def removed(self, alive):
    return tuple(name for name in self.blocks
                 if not (alive[f"{name}_conv1"][1].any() and alive[f"{name}_conv2"][1].any()))

  def architecture(self, alive):
    """Stem filters, then per block its conv1/conv2 filters (0/0: removed), then
    the fc inputs: "64-64/64-…-512/512-512" for the dense network."""
    parts = [str(int(alive["conv0"][1].sum()))]
    for name in self.blocks:
      parts.append(f"{int(alive[name + '_conv1'][1].sum())}/"
                   f"{int(alive[name + '_conv2'][1].sum())}")
    parts.append(str(int(alive["fc"][0].sum())))
    return "-".join(parts)

  def parse(self, text):
    """Inverse of `architecture`: {(layer, "in"|"out"): count}; one-line errors."""
    slots = [("conv0", "out")]
    for name in self.blocks:
      slots += [(f"{name}_conv1", "out"), (f"{name}_conv2", "out")]
    slots.append(("fc", "in"))
    try:
      numbers = [int(v) for part in str(text).split("-") for v in part.split("/")]
    except ValueError:
      numbers = []
    if len(numbers) != len(slots) or min(numbers, default=0) < 0:
      raise ValueError(f"config.compress.target_architecture: expected {len(self.blocks)} "
                       f"blocks 'a/b' between the stem and fc counts, joined by '-' (as "
                       f"architecture_after), got {text!r}")
    return dict(zip(slots, numbers))

  def compress(self, params, state, alive):
    """(smaller model, its params, its batch stats) computing what the masked
    network computes."""
    removed = self.removed(alive)
    keep, new_params, new_stats = [], {}, {}
    stats = state.get("batch_stats", {})

    def index(mask):
      return None if mask.all() else tuple(int(v) for v in np.flatnonzero(mask))

    def at_least_one(mask):
      # A layer with nothing left keeps one (all-zero) unit, so shapes stay valid.
      if mask.any():
        return mask
      mask = mask.copy()
      mask[0] = True
      return mask

    def put(conv, in_mask, out_mask, in_sliced):
      in_mask, out_mask = at_least_one(in_mask), at_least_one(out_mask)
      kernel = np.asarray(params[conv]["kernel"])
      axis = structure.IN_AXIS["dense" if conv == "fc" else "conv"]
      kernel = np.take(kernel, np.flatnonzero(in_mask), axis=axis)
      entry = {"kernel": np.take(kernel, np.flatnonzero(out_mask), axis=-1)}
      if "bias" in params[conv]:
        entry["bias"] = np.asarray(params[conv]["bias"])[out_mask]
      new_params[conv] = entry
      keep.append((conv, None if in_sliced else index(in_mask), index(out_mask)))
      bn = self.bn_of.get(conv)
      if bn is not None:
        new_params[bn] = {k: np.asarray(v)[out_mask] for k, v in params[bn].items()}
        if bn in stats:
          new_stats[bn] = {k: np.asarray(v)[out_mask] for k, v in stats[bn].items()}

    for layer in self.layers:
      name = layer.name
      block = name.split("_")[0]
      if block in removed and not name.endswith("_sc"):
        continue
      inputs, filters = alive[name]
      if name == "conv0":
        put(name, np.ones_like(inputs), filters, in_sliced=True)
      elif name == "fc":
        put(name, inputs, np.ones_like(filters), in_sliced=False)
      elif name.endswith("_conv2"):
        put(name, alive[f"{block}_conv1"][1], filters, in_sliced=True)
      else:  # conv1 or a projection: reads the stream channels it uses
        put(name, inputs, filters, in_sliced=False)
    keep = tuple(keep)
    small = self.model.clone(keep=keep, removed=removed, parent=None)
    return small, new_params, ({"batch_stats": new_stats} if new_stats else {}), {
        "model": "resnet18", "stage_widths": list(self.model.stage_widths),
        "keep": [[n, i, o] for n, i, o in keep], "removed": list(removed)}
