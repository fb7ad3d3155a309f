"""What group pruning removes from a chain of layers, and the smaller network.

`unit_masks` turns the group masks of every kernel into the masks of a network
whose removed units are really gone (SPEC §4, thesis App. A):

* an output unit (dense column, conv filter) with no surviving incoming weight is
  dead: its bias goes, and so do the next layer's inputs that read it (a conv
  filter feeds `fan` = H·W inputs of a dense layer after flattening, NHWC);
* an input unit of the next layer with no surviving outgoing weight removes the
  unit of the layer before that feeds it (when all its `fan` inputs are unused);

repeated until nothing changes. `compress` then slices every kernel and bias to
the surviving units, giving arrays for the same model built with smaller widths
(`model.shrunk`), whose output equals the masked network's.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Layer(NamedTuple):
  name: str   # Flax module name (its params key)
  kind: str   # "dense" | "conv"
  fan: int    # inputs of this layer per output unit of the previous one (flattened maps)


IN_AXIS = {"dense": 0, "conv": 2}


def _units(mask, kind, axis):
  """Per unit along `axis` ("in" or "out"), whether any weight survives."""
  ndim = mask.ndim
  unit_axis = IN_AXIS[kind] if axis == "in" else ndim - 1
  other = tuple(a for a in range(ndim) if a != unit_axis)
  return np.any(mask, axis=other)


def _channel_of_input(num_inputs, channels):
  """For flattened NHWC maps: the channel each input unit of the dense layer reads."""
  return np.arange(num_inputs) % channels


def unit_masks(layers, kernel_masks, bias_present):
  """(kernel masks, bias masks, alive output units, alive input units) after the
  structural consequences; `layers` are `models.Layer`s in order, `kernel_masks`
  {name: bool array}, `bias_present` {name: bool}."""
  masks = {name: np.asarray(m, bool).copy() for name, m in kernel_masks.items()}
  out_alive = {}
  changed = True
  while changed:
    changed = False
    for i, layer in enumerate(layers):
      mask = masks[layer.name]
      alive = _units(mask, layer.kind, "out")
      if i == len(layers) - 1:
        alive = np.ones_like(alive)  # the logits stay
      else:
        nxt = layers[i + 1]
        used = _units(masks[nxt.name], nxt.kind, "in")
        if nxt.fan > 1:  # flattened maps: unit c feeds inputs p·C + c
          channel = _channel_of_input(used.size, alive.size)
          used = np.bincount(channel, weights=used, minlength=alive.size) > 0
        alive = alive & used
      out_alive[layer.name] = alive
      if not np.all(alive):
        index = [slice(None)] * mask.ndim
        index[-1] = ~alive
        if np.any(mask[tuple(index)]):
          mask[tuple(index)] = False
          changed = True
      if i + 1 < len(layers):
        nxt = layers[i + 1]
        nmask = masks[nxt.name]
        reads = alive
        if nxt.fan > 1:
          reads = alive[_channel_of_input(nmask.shape[IN_AXIS[nxt.kind]], alive.size)]
        index = [slice(None)] * nmask.ndim
        index[IN_AXIS[nxt.kind]] = ~reads
        if np.any(nmask[tuple(index)]):
          nmask[tuple(index)] = False
          changed = True
  in_alive = {layer.name: _units(masks[layer.name], layer.kind, "in") for layer in layers}
  bias_masks = {layer.name: out_alive[layer.name] for layer in layers
                if bias_present.get(layer.name)}
  return masks, bias_masks, out_alive, in_alive


def compress(layers, params, out_alive, in_alive):
  """Sliced params for the smaller network, and what `model.shrunk` needs:
  (params, widths, input_index, flat_index). The first layer keeps only its
  surviving inputs (`input_index`, dense first layers); a dense layer after
  flattened maps keeps its surviving inputs, renumbered in the compressed
  flattening (`flat_index`)."""
  new = {}
  widths, input_index, flat_index = [], None, None
  previous = None
  for i, layer in enumerate(layers):
    kernel = np.asarray(params[layer.name]["kernel"])
    keep_out = np.flatnonzero(out_alive[layer.name])
    if keep_out.size == 0:
      raise ValueError(f"compress: every unit of {layer.name} was pruned, so the network "
                       f"computes a constant; lower config.compress.lambda_")
    in_axis = IN_AXIS[layer.kind]
    if previous is None:
      if layer.kind == "dense":
        keep_in = np.flatnonzero(in_alive[layer.name])
        input_index = tuple(int(v) for v in keep_in)
      else:
        keep_in = np.arange(kernel.shape[in_axis])
    elif layer.fan > 1:
      channels = out_alive[previous.name]
      rank = np.cumsum(channels) - 1
      keep_in = np.flatnonzero(in_alive[layer.name])
      c = keep_in % channels.size
      p = keep_in // channels.size
      flat_index = tuple(int(v) for v in p * int(channels.sum()) + rank[c])
    else:
      keep_in = np.flatnonzero(out_alive[previous.name])
    kernel = np.take(np.take(kernel, keep_in, axis=in_axis), keep_out, axis=-1)
    entry = {"kernel": kernel}
    if "bias" in params[layer.name]:
      entry["bias"] = np.asarray(params[layer.name]["bias"])[keep_out]
    new[layer.name] = entry
    if i < len(layers) - 1:
      widths.append(int(keep_out.size))
    previous = layer
  return new, widths, input_index, flat_index


def architecture_string(layers, out_alive, in_alive):
  """The thesis' notation: LeNet-300-100 "784-300-100", LeNet-5 "20-50-800-500" —
  a dense first layer's inputs, then per layer but the last its outputs, with the
  inputs of a dense layer after flattened maps before its outputs."""
  parts = []
  for i, layer in enumerate(layers[:-1]):
    if layer.kind == "dense" and (i == 0 or layers[i - 1].kind == "conv"):
      parts.append(int(np.sum(in_alive[layer.name])))
    parts.append(int(np.sum(out_alive[layer.name])))
  return "-".join(str(p) for p in parts)


def parse_architecture(layers, text):
  """Inverse of `architecture_string`: {(layer, "in"|"out"): count}; one-line errors."""
  slots = []
  for i, layer in enumerate(layers[:-1]):
    if layer.kind == "dense" and (i == 0 or layers[i - 1].kind == "conv"):
      slots.append((layer.name, "in"))
    slots.append((layer.name, "out"))
  try:
    numbers = [int(v) for v in str(text).split("-")]
  except ValueError:
    numbers = []
  if len(numbers) != len(slots) or min(numbers, default=0) < 1:
    raise ValueError(f"config.compress.target_architecture: expected {len(slots)} positive "
                     f"counts joined by '-' (as architecture_after), got {text!r}")
  return dict(zip(slots, numbers))


def select_by_norm(layers, kernels, counts):
  """Kernel masks keeping, per slot of `counts`, the units with the largest weight
  norms (a dense layer's input rows; a layer's output columns or filters): the
  magnitude criterion on the same groups. Input units are chosen among those that
  read a kept output of the layer before (through the flattening after a conv), so
  the kept counts survive the structural consequences."""
  masks = {}
  previous = None  # the layer before's kept outputs, where a count chose them
  for layer in layers:
    kernel = np.asarray(kernels[layer.name])
    mask = np.ones(kernel.shape, bool)
    kept_out = None
    for side in ("in", "out"):
      count = counts.get((layer.name, side))
      if count is None:
        continue
      axis = IN_AXIS[layer.kind] if side == "in" else kernel.ndim - 1
      other = tuple(a for a in range(kernel.ndim) if a != axis)
      norms = np.sqrt(np.sum(np.square(kernel), axis=other))
      if side == "in" and previous is not None:
        reads = (previous[_channel_of_input(norms.size, previous.size)]
                 if layer.fan > 1 else previous)
        norms = np.where(reads, norms, -np.inf)
      keep = np.zeros(norms.size, bool)
      keep[np.argsort(-norms, kind="stable")[:count]] = True
      if side == "out":
        kept_out = keep
      shape = [1] * kernel.ndim
      shape[axis] = norms.size
      mask &= keep.reshape(shape)
    masks[layer.name] = mask
    previous = kept_out
  return masks
