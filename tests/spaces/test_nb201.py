"""The NAS-Bench-201 space (`spaces/nb201.py`) against a reference written here.

The search network runs the N cells of a stage as one `lax.scan` over weights
stacked [N, 6, ...]; the reference below runs every cell, edge and op on its
own in plain Python loops, from the cell and macro-network description of the
NB201 paper (and the module docstring), with `bayesnas_jax.nn` primitives so
that the curvature engine applies to it too. The two must agree in value,
gradients and architecture-scalar curvature in float64; the architecture
masks select their cell; the origin scalar on the edge input is cancelled by
batch norm, on the output it is not. The discrete side (derivation, NB201
strings, files, random cells, decisions) is in test_nb201_discrete.py.
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bayesnas_jax import nn
from bayesnas_jax.curvature import value_grad_curvature
from bayesnas_jax.spaces import nb201
from tests.spaces.nb201_support import BATCH, EDGES, EXAMPLE_EDGES, OPS, SIZE
from tests.spaces.nb201_support import config as _config
from tests.spaces.nb201_support import float64 as _float64
from tests.spaces.nb201_support import nb201_config as _nb201


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


# --- 2. Architecture masks --------------------------------------------------------

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


# --- 3. The origin scalar under batch norm (space.origin) -----------------

def _origin_gradient(origin, batch):
  config = _nb201(("nor_conv_1x1", "nor_conv_3x3"), origin)
  images, labels = batch
  weights = _float64(nb201.init_weights(jax.random.PRNGKey(0), config))
  arch = _float64(nb201.init_arch(config))
  arch["cell"]["origin"] = arch["cell"]["origin"] * 0.7

  def loss(origin_scalars):
    a = {"cell": {**arch["cell"], "origin": origin_scalars}}
    logits = nb201.apply(weights, a, images, config)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

  return np.abs(np.asarray(jax.grad(loss)(arch["cell"]["origin"])))


def test_origin_under_batch_norm(tiny_batch):
  """Only BN-ended ops (the convolutions): w⁰ on the input is cancelled by every
  op's BN (up to its ε), so its data gradient all but vanishes; on the output
  weighs the edge against the other inputs of its node and has an ordinary
  gradient — except on 0→1, node 1's only input, which here feeds BN-ended ops
  alone, so scaling it is cancelled one node later."""
  on_input = _origin_gradient("input", tiny_batch)[0]
  on_output = _origin_gradient("output", tiny_batch)[0]
  mixed = on_output[1:]  # 0→2, 1→2, 0→3, 1→3, 2→3
  assert mixed.min() > 1e-3, on_output
  assert on_output[0] < 1e-2 * mixed.min(), on_output
  assert on_input.max() < 1e-2 * mixed.min(), (on_input, on_output)
