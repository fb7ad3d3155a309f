"""Tree cells in PyramidNet: the cell against a path-by-path reference (value,
gradients, curvature in float64), what pruning a path removes, empty cells,
the rebuilt network's parameter count, and one-line errors for bad genotype
files."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import nn, value_grad_curvature
from bayesnas_jax.spaces import tree_pyramid as tp
from tests.spaces.tree_pyramid_support import config as _config

C = 4


def test_tree_cell_a_has_9_paths_of_3_edges_and_the_pyramid_widths():
  table = tp.edges()
  assert len(table) == 15
  assert sorted({p for e in table for p in e.paths}) == list(range(1, 10))
  for p in range(1, 10):
    assert [e.depth for e in table if p in e.paths] == [0, 1, 2]
  assert [e.op for e in table if e.depth == 0] == ["group_conv_3x3"] * 2
  # Additive widening: c_k = round(16 + k·84/54), odd widths made even.
  widths = tp.widths(18, 84)
  assert len(widths) == 54 and widths[:6] == [18, 18, 20, 22, 24, 24] and widths[-1] == 100
  assert all(w % 2 == 0 for w in widths)


def _reference_cell(weights, x, scalar):
  """TreeCell-A written path by path: each path recomputes its own edges, and
  its leaf output enters the sum with the product of the 1/n of the add-merges
  it passes (root ½; B1 ½, B1A concat, B1B ½; B2 ½, B2A ⅓, B2B ½), a concat half
  placed at its channels."""
  def pre(z):
    return nn.relu(nn.batch_norm(z))

  def group(z, e):
    return nn.conv2d(pre(z), weights[e]["w"], groups=2)

  def sep(z, e):
    return nn.dense(nn.conv2d(pre(z), weights[e]["dw"], groups=nn.value_of(z).shape[-1]),
                    weights[e]["pw"])

  def half(z, first):
    return nn.structural(lambda v: v[..., :C // 2] if first else v[..., C // 2:], z)

  def place(z, first):
    pad = ((0, 0),) * 3 + (((0, C // 2) if first else (C // 2, 0)),)
    return nn.structural(lambda v: jnp.pad(v, pad), z)

  r1 = lambda: group(x, "e0")  # noqa: E731
  r2 = lambda: group(x, "e7")  # noqa: E731
  b1a = lambda: nn.dense(pre(r1()), weights["e1"]["w"])  # noqa: E731
  b1b = lambda: nn.max_pool(r1(), 3, 1)  # noqa: E731
  b2a = lambda: sep(r2(), "e8")  # noqa: E731
  b2b = lambda: sep(r2(), "e12")  # noqa: E731
  paths = {
      1: (1 / 4, place(nn.avg_pool(half(b1a(), True), 3, 1), True)),
      2: (1 / 4, place(sep(half(b1a(), False), "e3"), False)),
      3: (1 / 8, sep(b1b(), "e5")), 4: (1 / 8, sep(b1b(), "e6")),
      5: (1 / 12, sep(b2a(), "e9")), 6: (1 / 12, nn.avg_pool(b2a(), 3, 1)),
      7: (1 / 12, nn.avg_pool(b2a(), 3, 1)),
      8: (1 / 8, nn.avg_pool(b2b(), 3, 1)), 9: (1 / 8, sep(b2b(), "e14")),
  }
  terms = [nn.scale(scalar(p, y), jnp.asarray(coef)) for p, (coef, y) in paths.items()]
  return nn.add(*terms)


def _cell_case():
  rng = np.random.default_rng(0)
  weights = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                         tp.init_cell(rng, C, dtype=jnp.float64))
  x = jnp.asarray(rng.normal(size=(3, 5, 5, C)))
  scalars = jnp.asarray(0.5 + rng.random(9))
  target = jnp.asarray(rng.normal(size=(3, 5, 5, C)))
  return {"w": weights, "s": scalars}, x, target


def test_tree_cell_equals_the_path_by_path_reference():
  params, x, target = _cell_case()

  def loss(p, cell):
    scale = lambda k, y: nn.scale(y, nn.structural(lambda v: v[k - 1], p["s"]))  # noqa: E731
    if cell:
      out = tp.apply_cell(p["w"], x, scale, 1)
    else:
      out = _reference_cell(p["w"], x, scale)
    return nn.mean_squared_error(out, target)

  for mode in ("hessian", "ggn"):
    tree = value_grad_curvature(lambda p: loss(p, True), params, mode=mode)
    ref = value_grad_curvature(lambda p: loss(p, False), params, mode=mode)
    np.testing.assert_allclose(tree[0], ref[0], rtol=1e-12)
    for a, b in zip(jax.tree.leaves(tree[1:]), jax.tree.leaves(ref[1:])):
      np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14)
  grads = jax.grad(lambda p: loss(p, True))(params)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(tree[1])):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_pruning_a_path_removes_exactly_its_ops():
  everything = set(range(15))
  assert everything - set(tp.kept_edges([p for p in range(1, 10) if p != 2])) == {3}
  # P1 and P2 gone: the 1×1 conv feeding the split node goes with them.
  assert everything - set(tp.kept_edges([3, 4, 5, 6, 7, 8, 9])) == {1, 2, 3}
  # P1 gone: the 1×1 conv produces only the dw7 half's channels.
  rng = np.random.default_rng(0)
  cell = tp.init_cell(rng, 8, kept=(2, 3))
  assert set(cell) == {"e0", "e1", "e3", "e5"}   # e4 (max pool) has no weights
  assert cell["e1"]["w"].shape == (8, 4) and cell["e3"]["pw"].shape == (4, 4)
  # The rebuilt cell puts the dw7 half back at channels 4..7.
  x = jnp.asarray(rng.normal(size=(2, 5, 5, 8)), jnp.float32)
  out = tp.apply_cell(cell, x, lambda p, y: y, 1, kept=(2,))
  assert out.shape == (2, 5, 5, 8) and not np.any(np.asarray(out)[..., :4])


def test_a_cell_with_every_path_pruned_leaves_the_shortcut():
  config = _config()
  kept = [(), (), ()]
  weights = tp.init_weights(0, config, kept=kept)
  images = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 8, 3)), jnp.float32)
  logits = tp.apply(weights, None, images, config, kept=kept)
  x = nn.batch_norm(nn.conv2d(images, weights["stem"]))
  for (_, _, _, c, stride) in tp._blocks(config):  # pylint: disable=protected-access
    if stride == 2:
      x = nn.avg_pool(x, 2, 2)
    x = jnp.pad(x, ((0, 0),) * 3 + ((0, 4 * c - x.shape[-1]),))
  x = jnp.mean(nn.relu(nn.batch_norm(x)), axis=(1, 2))
  np.testing.assert_allclose(logits, x @ weights["classifier"]["w"] + weights["classifier"]["b"],
                             rtol=1e-5, atol=1e-6)
  assert all(block == {} for block in weights["blocks"])


def test_rebuilt_network_has_the_counted_parameters():
  config = _config(n=2, alpha=10.0)
  rng = np.random.default_rng(3)
  for _ in range(3):
    architecture = tp.random_architecture(rng, config)
    weights = tp.init_weights(0, config, kept=tp.kept_paths(architecture))
    size = sum(int(np.size(a)) for a in jax.tree.leaves(weights))
    assert size == tp.parameter_count(architecture, config)
  full = {"cells": [{"stage": s, "block": b, "paths": list(range(1, 10))}
                    for s in (1, 2, 3) for b in (1, 2)]}
  shapes = jax.eval_shape(lambda: tp.init_weights(0, config))
  assert tp.parameter_count(full, config) == sum(int(np.prod(a.shape))
                                                 for a in jax.tree.leaves(shapes))


def test_bad_genotype_files_are_one_line(tmp_path):
  config = _config()
  path = tmp_path / "genotype.json"
  path.write_text(json.dumps({"cells": [{"stage": 1, "block": 1, "paths": [0, 3]}]}))
  with pytest.raises(ValueError, match="genotype.json: 1 cells; expected one per block"):
    tp.load_architecture(str(path), config)
  cells = [{"stage": s, "block": 1, "paths": [3, 1]} for s in (1, 2, 3)]
  path.write_text(json.dumps({"cells": cells}))
  with pytest.raises(ValueError, match="expected sorted distinct ids in 1..9"):
    tp.load_architecture(str(path), config)
