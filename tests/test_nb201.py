"""The NAS-Bench-201 space (`spaces/nb201.py`) against a reference written here.

The search network runs the N cells of a stage as one `lax.scan` over weights
stacked [N, 6, ...]; the reference below runs every cell, edge and op on its
own in plain Python loops, from the cell and macro-network description of the
NB201 paper (and the module docstring), with `bayesnas_jax.nn` primitives so
that the curvature engine applies to it too. The two must agree in value,
gradients and architecture-scalar curvature in float64. The discrete side
(derivation, NB201 strings, files, random cells, masks) is checked against
hand-made tables.
"""
import functools
import json
import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bayesnas_jax import nn
from bayesnas_jax.curvature import value_grad_curvature
from bayesnas_jax.spaces import nb201

OPS = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# NB201's edge order, written out: node k's inputs j = 0 … k−1, node after node.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
BATCH, SIZE, CLASSES = 4, 8, 3


def _config(cells_per_stage=2, channels=4):
  return ml_collections.ConfigDict(dict(
      name="nb201", ops=list(OPS), channels=channels, cells_per_stage=cells_per_stage,
      num_classes=CLASSES, remat=False))


# --- The reference network ------------------------------------------------

def _ref_op(name, z, weight):
  if name == "skip_connect":
    return z
  if name == "nor_conv_1x1":  # ReLU → 1×1 conv (a dense map per pixel) → BN
    return nn.batch_norm(nn.dense(nn.relu(z), weight))
  if name == "nor_conv_3x3":  # ReLU → 3×3 conv → BN
    return nn.batch_norm(nn.conv2d(nn.relu(z), weight))
  if name == "avg_pool_3x3":
    return nn.avg_pool(z, 3, 1)
  raise AssertionError(name)


def _ref_cell(stage_weights, cell, origin, ops, m_origin, m_ops, x, after=False):
  """One cell: node k = Σ_{j<k} edge(j, k), edge = Σ_o w^o · op_o(w^0 · z_j), or
  with `after` (space.origin = "output") edge = w^0 · Σ_o w^o · op_o(z_j).

  `stage_weights[op]` is [N, 6, ...], of which this cell reads row `cell`;
  origin [1, 6] and ops [1, 6, 4] are the shared scalars, each multiplied
  by its 0/1 mask here."""
  nodes = [x]
  for k in (1, 2, 3):
    terms = []
    for e, (j, target) in enumerate(EDGES):
      if target != k:
        continue
      a0 = nn.scale(nn.structural(lambda v, e=e: v[0, e], origin), m_origin[0, e])
      z = nodes[j] if after else nn.scale(nodes[j], a0)
      edge_terms = []
      for o, name in enumerate(OPS):
        weight = None
        if name in ("nor_conv_1x1", "nor_conv_3x3"):
          weight = nn.structural(lambda v, e=e: v[cell, e], stage_weights[name])
        a = nn.scale(nn.structural(lambda v, e=e, o=o: v[0, e, o], ops), m_ops[0, e, o])
        edge_terms.append(nn.scale(_ref_op(name, z, weight), a))
      edge = nn.add(*edge_terms)
      terms.append(nn.scale(edge, a0) if after else edge)
    nodes.append(nn.add(*terms))
  return nodes[3]


def _ref_reduction(w, x):
  """NB201's ResNet basic block, stride 2: ReLU-conv-BN twice, plus a 2×2
  average pool then 1×1 conv on the shortcut."""
  y = nn.batch_norm(nn.conv2d(nn.relu(x), w["conv_a"], stride=2))
  y = nn.batch_norm(nn.conv2d(nn.relu(y), w["conv_b"], stride=1))
  return nn.add(y, nn.dense(nn.avg_pool(x, 2, 2), w["shortcut"]))


def reference_apply(weights, arch, images, arch_masks, cells_per_stage, cell_of=None,
                    after=False):
  """The search network cell after cell, edge after edge. `cell_of(stage, i)`
  is the weight row cell i reads (the identity; a planted bug may change it)."""
  cell_of = cell_of or (lambda stage, i: i)
  origin, ops = arch["cell"]["origin"], arch["cell"]["ops"]
  m_origin, m_ops = arch_masks["cell"]["origin"], arch_masks["cell"]["ops"]

  x = nn.batch_norm(nn.conv2d(images, weights["stem"]))
  for stage in range(3):
    if stage:
      x = _ref_reduction(weights["reductions"][stage - 1], x)
    for i in range(cells_per_stage):
      x = _ref_cell(weights["stages"][stage], cell_of(stage, i), origin, ops, m_origin,
                    m_ops, x, after)
  x = nn.relu(nn.batch_norm(x))
  return nn.dense(nn.global_avg_pool(x), weights["classifier"]["w"],
                  weights["classifier"]["b"])


# --- A shared float64 problem ----------------------------------------------

def _arch_masks():
  """Switches off the origin of edge 1→2 and three (edge, op) pairs."""
  origin = np.ones((1, 6))
  origin[0, 2] = 0
  ops = np.ones((1, 6, 4))
  ops[0, 0, 0] = ops[0, 3, 2] = ops[0, 5, 3] = 0
  return {"cell": {"origin": jnp.asarray(origin), "ops": jnp.asarray(ops)}}


@functools.lru_cache(maxsize=None)
def _problem():
  config = _config()
  key = jax.random.PRNGKey(11)
  weights = nb201.init_weights(key, config, dtype=jnp.float64)
  rng = np.random.default_rng(5)
  arch = {"cell": {"origin": jnp.asarray(rng.uniform(0.5, 1.5, (1, 6))),
                   "ops": jnp.asarray(rng.uniform(0.5, 1.5, (1, 6, 4)))}}
  images = jnp.asarray(rng.standard_normal((BATCH, SIZE, SIZE, 3)))
  labels = jnp.asarray([0, 2, 1, 1])
  return config, weights, arch, images, labels


@functools.lru_cache(maxsize=None)
def _jitted_forward():
  config = _problem()[0]
  with_masks = jax.jit(lambda w, a, x, m: nb201.apply(w, a, x, config, m))
  plain = jax.jit(lambda w, a, x: nb201.apply(w, a, x, config))
  return with_masks, plain


def _rel_err(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _assert_close(a, b, rtol=1e-10, what=""):
  """Equal up to rtol relative to the largest entry of b."""
  err = _rel_err(a, b)
  assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol}"


# --- 1. Scanned search network = edge-by-edge reference -------------------

def test_scanned_network_equals_edge_by_edge_reference():
  """Value, gradients (weights and scalars) and scalar curvature in float64,
  C = 4, two cells per stage (a two-step scan), some scalars masked off."""
  config, weights, arch, images, labels = _problem()
  masks = _arch_masks()
  probe = {"weights": False, "arch": True}
  params = {"weights": weights, "arch": arch}

  def ours_loss(p):
    return nn.softmax_cross_entropy(nb201.apply(p["weights"], p["arch"], images, config,
                                                masks), labels)

  def ref_loss(p):
    return nn.softmax_cross_entropy(reference_apply(p["weights"], p["arch"], images, masks,
                                                    config.cells_per_stage), labels)

  ours = jax.jit(lambda p: value_grad_curvature(ours_loss, p, probe_mask=probe))(params)
  # The unrolled reference runs eagerly: jitted, it compiles for minutes.
  ref = value_grad_curvature(ref_loss, params, probe_mask=probe)

  _assert_close(ours[0], ref[0], what="loss")
  assert jax.tree_util.tree_structure(ours[1]) == jax.tree_util.tree_structure(ref[1])
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours[1]),
                          jax.tree_util.tree_leaves(ref[1])):
    _assert_close(a, b, what=f"gradient {jax.tree_util.keystr(path)}")
  for part in ("origin", "ops"):
    _assert_close(ours[2]["arch"]["cell"][part], ref[2]["arch"]["cell"][part],
                  what=f"curvature {part}")
  # Not vacuous: every weight leaf gets a gradient, every live scalar a
  # gradient and curvature, every masked one neither (nor the op scalars of
  # edge 1→2, whose origin is masked: all its ops then see a zero input).
  for leaf in jax.tree_util.tree_leaves(ref[1]["weights"]):
    assert np.any(np.asarray(leaf) != 0)
  live = {"origin": np.asarray(masks["cell"]["origin"]) > 0}
  live["ops"] = (np.asarray(masks["cell"]["ops"]) > 0) & live["origin"][..., None]
  for part in ("origin", "ops"):
    on = live[part]
    g = np.asarray(ours[1]["arch"]["cell"][part])
    h = np.asarray(ours[2]["arch"]["cell"][part])
    assert np.all(g[on] != 0) and np.all(h[on] != 0), part
    assert np.all(g[~on] == 0) and np.all(h[~on] == 0), part
  # Second-cell weights do matter: both cells of each stage get gradients.
  for stage in ref[1]["weights"]["stages"]:
    for leaf in stage.values():
      assert all(np.any(np.asarray(leaf[i]) != 0) for i in range(config.cells_per_stage))

  # A planted bug in the reference (the second cell of every stage reading the
  # first cell's weights) is caught by the same comparison.
  logits = _jitted_forward()[0](weights, arch, images, masks)
  wrong = reference_apply(weights, arch, images, masks, config.cells_per_stage,
                          cell_of=lambda stage, i: 0)
  assert _rel_err(wrong, logits) > 1e-3


def test_origin_after_the_ops_equals_edge_by_edge_reference():
  """space.origin = "output": logits and scalar gradients in float64 against the
  reference with w⁰ on each edge's output; the input placement's reference
  gives other logits (the comparison can fail)."""
  config, weights, arch, images, labels = _problem()
  config = ml_collections.ConfigDict({**config.to_dict(), "origin": "output"})
  masks = _arch_masks()

  def ours(a):
    return nn.softmax_cross_entropy(nb201.apply(weights, a, images, config, masks), labels)

  def ref(a):
    return nn.softmax_cross_entropy(reference_apply(weights, a, images, masks,
                                                    config.cells_per_stage, after=True),
                                    labels)

  logits = jax.jit(lambda a: nb201.apply(weights, a, images, config, masks))(arch)
  ref_logits = reference_apply(weights, arch, images, masks, config.cells_per_stage,
                               after=True)
  _assert_close(logits, ref_logits, what="logits")
  g_ours = jax.jit(jax.grad(ours))(arch)
  g_ref = jax.grad(ref)(arch)
  for part in ("origin", "ops"):
    _assert_close(g_ours["cell"][part], g_ref["cell"][part], what=f"gradient {part}")
  before = reference_apply(weights, arch, images, masks, config.cells_per_stage)
  assert _rel_err(before, logits) > 1e-3


# --- 2. Derivation ------------------------------------------------------------

def _search(grouping):
  return types.SimpleNamespace(grouping=grouping)


def test_derive_from_gamma_and_keep():
  spec = nb201.cell_spec()
  # ops columns: skip, conv1x1, conv3x3, pool
  gamma = np.array([[9.0, 1.0, 2.0, 3.0],   # origin pruned → none
                    [1.0, 2.0, 3.0, 4.0],   # every op pruned → none
                    [1.0, 2.0, 9.0, 3.0],   # conv3x3 has the largest γ but is pruned
                    [0.5, 0.7, 0.1, 0.6],   # all kept: conv1x1
                    [2.0, 2.0, 1.0, 0.0],   # a tie: the first op (skip)
                    [5.0, 0.1, np.nan, 4.0]])  # pruned skip, NaN never wins: pool
  keep = np.ones((6, 4), bool)
  keep[1] = False
  keep[2, 2] = False
  keep[5, 0] = False
  keep_origin = np.ones(6, bool)
  keep_origin[0] = False
  state = {"gamma": {"cell": {"origin": np.ones(6), "ops": gamma}},
           "keep": {"cell": {"origin": keep_origin, "ops": keep}}}
  expected = {"cell": [["none", 0, 1], ["none", 0, 2], ["avg_pool_3x3", 1, 2],
                       ["nor_conv_1x1", 0, 3], ["skip_connect", 1, 3],
                       ["avg_pool_3x3", 2, 3]]}
  assert nb201.derive(state, _search("cell_type"), spec) == expected
  # Through the SearchSpace as the search loop calls it.
  space = nb201.make(_config(1))
  assert space.derive(state, _search("cell_type")) == expected

  # grouping "none": per-member arrays [2, ...]; γ is averaged over members and
  # a pair is kept if any member keeps it.
  gamma_m = np.stack([gamma, gamma])
  gamma_m[0, 3] = [0.9, 0.0, 0.0, 0.0]  # mean row 3: [0.7, 0.35, 0.05, 0.3] → skip
  keep_m = np.stack([keep, keep])
  keep_m[1, 1, 2] = True  # edge 0→2: conv3x3 kept by member 1 only
  keep_m[0, 2, :] = False  # edge 1→2: member 1 still keeps its pool
  origin_m = np.stack([keep_origin, keep_origin])
  origin_m[1, 0] = True  # edge 0→1: origin kept by member 1 → argmax skip
  state_m = {"gamma": {"cell": {"origin": np.ones((2, 6)), "ops": gamma_m}},
             "keep": {"cell": {"origin": origin_m, "ops": keep_m}}}
  expected_m = {"cell": [["skip_connect", 0, 1], ["nor_conv_3x3", 0, 2],
                         ["avg_pool_3x3", 1, 2], ["skip_connect", 0, 3],
                         ["skip_connect", 1, 3], ["avg_pool_3x3", 2, 3]]}
  assert nb201.derive(state_m, _search("none"), spec) == expected_m
  # The same tables in the [1, ...] layout of grouping "none" with one member.
  state_1 = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], state)
  assert nb201.derive(state_1, _search("none"), spec) == expected


# --- 3. NB201 strings and files ------------------------------------------------

EXAMPLE = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
           "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
EXAMPLE_EDGES = [["nor_conv_3x3", 0, 1], ["nor_conv_3x3", 0, 2], ["avg_pool_3x3", 1, 2],
                 ["skip_connect", 0, 3], ["nor_conv_3x3", 1, 3], ["skip_connect", 2, 3]]


def _gamma_state():
  rng = np.random.default_rng(0)
  return {"gamma": {"cell": {"origin": rng.uniform(0.01, 2, 6),
                             "ops": rng.uniform(0.01, 2, (6, 4))}},
          "keep": {"cell": {"origin": np.ones(6, bool), "ops": rng.uniform(size=(6, 4)) > 0.3}}}


def test_arch_string_parse_and_files(tmp_path):
  spec = nb201.cell_spec()
  assert nb201.parse_arch_string(EXAMPLE) == {"cell": EXAMPLE_EDGES}
  assert nb201.parse_arch_string("  " + EXAMPLE + "\n") == {"cell": EXAMPLE_EDGES}
  assert nb201.arch_string({"cell": EXAMPLE_EDGES}) == EXAMPLE
  # The string does not depend on the order the edges are listed in.
  assert nb201.arch_string({"cell": EXAMPLE_EDGES[::-1]}) == EXAMPLE
  assert nb201.arch_string({"cell": [["none", j, k] for j, k in EDGES]}) == (
      "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")

  space = nb201.make(_config(1))
  rng = np.random.default_rng(1)
  for t in range(30):
    arch = space.random_architecture(rng)
    assert [(j, k) for _, j, k in arch["cell"]] == list(EDGES)
    text = nb201.arch_string(arch)
    assert nb201.parse_arch_string(text) == arch
    path = tmp_path / f"arch_{t}.txt"
    path.write_text(text + "\n")
    assert space.load_architecture(str(path)) == arch
  # genotype.json and nb201_arch.txt written by the export, read back.
  for t in range(2):
    arch = nb201.random_architecture(rng, spec)
    workdir = tmp_path / f"run_{t}"
    workdir.mkdir()
    summary = space.export(str(workdir), arch, _gamma_state(), _search("cell_type"))
    assert summary["nb201"] == nb201.arch_string(arch)
    assert summary["derived_edges"]["cell"] == sum(op != "none" for op, _, _ in arch["cell"])
    genotype = json.loads((workdir / "genotype.json").read_text())
    assert genotype["cell"] == arch["cell"]
    assert nb201.load_architecture(str(workdir / "genotype.json")) == arch
    assert nb201.load_architecture(str(workdir / "nb201_arch.txt")) == arch

  bad_strings = [
      "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",  # two groups
      EXAMPLE + "+|none~0|none~1|none~2|none~3|",  # four groups
      EXAMPLE.replace("avg_pool_3x3~1", "avg_pool_3x3~0"),  # wrong source
      EXAMPLE.replace("|nor_conv_3x3~0|+", "|nor_conv_3x3~1|+", 1),
      EXAMPLE.replace("avg_pool_3x3", "max_pool_3x3"),  # unknown op
      EXAMPLE.replace("skip_connect~2", "skip_connect~2|none~3"),  # too many inputs
      EXAMPLE.replace("|avg_pool_3x3~1", ""),  # too few inputs
      EXAMPLE.replace("nor_conv_3x3~0|+", "nor_conv_3x3~0+", 1),  # missing bar
      "nor_conv_3x3 0 1\nskip_connect 0 2",
      "",
  ]
  for text in bad_strings:
    with pytest.raises(ValueError) as info:
      nb201.parse_arch_string(text)
    assert "\n" not in str(info.value) and "NB201 string" in str(info.value), text
  # An op outside a restricted op set is refused.
  with pytest.raises(ValueError, match="bad entry"):
    nb201.parse_arch_string(EXAMPLE, ops=("skip_connect", "nor_conv_3x3"))

  # Malformed files: one-line errors naming the file.
  cases = {
      "bad.txt": EXAMPLE.replace("skip_connect~2", "skip_connect~1"),
      "short.json": json.dumps({"cell": EXAMPLE_EDGES[:5]}),
      "badop.json": json.dumps({"cell": [["conv_7x7", 0, 1]] + EXAMPLE_EDGES[1:]}),
      "nocell.json": json.dumps({"normal": EXAMPLE_EDGES}),
      "broken.json": "{\"cell\": [",
  }
  for name, text in cases.items():
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError) as info:
      nb201.load_architecture(str(tmp_path / name))
    message = str(info.value)
    assert "\n" not in message and name in message, (name, message)
  with pytest.raises(ValueError, match="missing.txt"):
    nb201.load_architecture(str(tmp_path / "missing.txt"))


# --- 4. Uniform random cells --------------------------------------------------------

def test_random_architecture_is_uniform_per_edge_and_independent():
  spec = nb201.cell_spec()
  choices = ("none",) + OPS
  draws = 5000
  rng = np.random.default_rng(2024)
  table = np.array([[choices.index(op) for op, _, _ in
                     nb201.random_architecture(rng, spec)["cell"]] for _ in range(draws)])
  assert table.shape == (draws, 6)
  # Per edge, each of the 5 choices: Binomial(5000, 1/5), 5 σ ≈ 141 draws.
  p = 1 / len(choices)
  bound = 5 * math.sqrt(draws * p * (1 - p))
  for e in range(6):
    counts = np.bincount(table[:, e], minlength=len(choices))
    assert np.all(np.abs(counts - draws * p) < bound), (e, counts)
  # Consecutive edges are independent: each of the 25 joint outcomes ~1/25.
  q = p * p
  bound = 5 * math.sqrt(draws * q * (1 - q))
  for e in range(5):
    joint = np.bincount(table[:, e] * 5 + table[:, e + 1], minlength=25)
    assert np.all(np.abs(joint - draws * q) < bound), (e, joint)
  # The same generator state gives the same cell (numpy rngs drive it).
  a = nb201.random_architecture(np.random.default_rng(7), spec)
  b = nb201.random_architecture(np.random.default_rng(7), spec)
  assert a == b


# --- 5. Architecture masks --------------------------------------------------------

def test_architecture_masks_select_the_architecture():
  config, weights, arch, images, _ = _problem()
  spec = nb201.cell_spec(config)
  forward, plain = _jitted_forward()
  architectures = [
      {"cell": EXAMPLE_EDGES},
      {"cell": [["none", 0, 1], ["nor_conv_1x1", 0, 2], ["none", 1, 2],
                ["avg_pool_3x3", 0, 3], ["skip_connect", 1, 3], ["nor_conv_3x3", 2, 3]]},
  ]
  full = plain(weights, arch, images)
  for architecture in architectures:
    masks = nb201.architecture_masks(architecture, arch, spec)
    expected_ops = np.zeros((1, 6, 4))
    expected_origin = np.zeros((1, 6))
    for op, j, k in architecture["cell"]:
      if op != "none":
        expected_ops[0, EDGES.index((j, k)), OPS.index(op)] = 1
        expected_origin[0, EDGES.index((j, k))] = 1
    assert masks["cell"]["ops"].shape == arch["cell"]["ops"].shape
    assert masks["cell"]["origin"].shape == arch["cell"]["origin"].shape
    np.testing.assert_array_equal(masks["cell"]["ops"], expected_ops)
    np.testing.assert_array_equal(masks["cell"]["origin"], expected_origin)
    zeroed = {"cell": {"ops": arch["cell"]["ops"] * expected_ops,
                       "origin": arch["cell"]["origin"] * expected_origin}}
    masked = forward(weights, arch, images, masks)
    _assert_close(masked, plain(weights, zeroed, images), rtol=1e-12,
                  what="masked network")
    assert _rel_err(masked, full) > 1e-3  # the masks do change the network


def test_evaluation_network_updates_every_running_statistic():
  """Training mode moves the running statistics of every BN, on every edge of
  every cell (a regression: the first three edges' updates were overwritten by
  their old values), and eval mode then matches the training-mode output."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel,reimported
  from bayesnas_jax.evaluation import nb201_network  # pylint: disable=import-outside-toplevel
  genotype = ("nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3", "nor_conv_1x1",
              "nor_conv_3x3", "nor_conv_3x3")
  config = {"channels": 4, "cells_per_stage": 1, "num_classes": CLASSES,
            "bn_momentum": 1.0}
  params, stats = nb201_network.init(jax.random.PRNGKey(0), genotype, config)
  images = jax.random.normal(jax.random.PRNGKey(1), (16, SIZE, SIZE, 3), jnp.float32)
  train_logits, _, new = nb201_network.apply(params, stats, images, genotype, config,
                                             train=True)
  for cell_old, cell_new in zip(stats["cells"], new["cells"]):
    for e, (old, updated) in enumerate(zip(cell_old, cell_new)):
      assert not np.allclose(old["bn"]["mean"], updated["bn"]["mean"]), e
  # Momentum 1: the running statistics are this batch's (variance unbiased by
  # n/(n − 1)), so eval mode reproduces the training-mode logits closely.
  eval_logits, _, _ = nb201_network.apply(params, new, images, genotype, config,
                                          train=False)
  np.testing.assert_allclose(np.asarray(eval_logits), np.asarray(train_logits),
                             rtol=0.05, atol=0.05)
