"""The DARTS supernet against an edge-by-edge reference (SPEC §1, §4).

`spaces.cell.apply_cell_edges` folds edges along channels and scans over the
source nodes with padded edge slots, reading weights in the packed layout of
`darts.pack_weights`; the reference below runs every (edge, op) pair on its
own, node after node, with the canonical weights. The two must agree in value,
gradient and curvature (folding is exact: every op acts per channel or per
edge block), and the packing must be lossless with zero padding. The per-node
decisions of a DARTS search are counted on a hand-made keep table."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bayesnas_jax import nn
from bayesnas_jax.curvature import value_grad_curvature
from bayesnas_jax.spaces import darts
from bayesnas_jax.spaces.cell import source_stride
from bayesnas_jax.spaces.ops import OPS
from tests.tests_support import hard_state


# A small op set for compile time: a skip (a factorized reduce on reduction
# edges), a weighted op with depthwise convolutions and a pool with routing.
OPS_SMALL = ("skip_connect", "sep_conv_3x3", "max_pool_3x3")


def _space(num_nodes, ops=OPS_SMALL, layers=7, stem_multiplier=2):
  # 7 layers: N N R N R N N — runs [0, 1] (reading the stem) and [5, 6].
  return ml_collections.ConfigDict(dict(
      ops=list(ops), num_nodes=num_nodes, layers=layers, channels=2,
      stem_multiplier=stem_multiplier, num_classes=3, depthwise_impl="auto",
      scan_inputs=True))


def _edge_weights(weights, spec, e):
  """One edge's weights, [1, ...] per leaf, from the per-source stacks."""
  j, _ = spec.edges[e]
  position = spec.out_edges(j).index(e)
  return jax.tree_util.tree_map(lambda v: v[position:position + 1], weights[f"from_{j}"])


def reference_cell(weights, origin, op_scalars, inputs, spec, reduction, config):
  nodes = list(inputs)
  for k in spec.intermediate:
    terms = []
    for e in spec.in_edges(k):
      j = spec.edges[e][0]
      w = _edge_weights(weights, spec, e)
      x = nn.scale(nodes[j], nn.structural(lambda v, e=e: v[e], origin))
      for o, name in enumerate(spec.ops):
        y = OPS[name].apply(w[name], x, source_stride(spec, j, reduction), config)
        terms.append(nn.scale(y, nn.structural(lambda v, e=e, o=o: v[e, o], op_scalars)))
    nodes.append(nn.add(*terms))
  return nodes[spec.num_inputs:]


def reference_network(weights, arch, images, config):
  """The search network cell after cell, every edge on its own."""
  spec = darts.cell_spec(config)
  plan, _ = darts.cell_plan(config)
  stem = weights["stem"]
  x = nn.batch_norm(nn.conv2d(images, stem["w"]), stem["scale"], stem["bias"])
  s0 = s1 = x
  for cell, (kind, index, _, _) in zip(weights["cells"], plan):
    inputs = (darts._apply_preprocess(cell["pre0"], s0),  # pylint: disable=protected-access
              darts._apply_preprocess(cell["pre1"], s1))  # pylint: disable=protected-access
    origin = nn.structural(lambda v, i=index: v[i], arch[kind]["origin"])
    ops = nn.structural(lambda v, i=index: v[i], arch[kind]["ops"])
    nodes = reference_cell(cell["edges"], origin, ops, inputs, spec, kind == "reduce", config)
    s0, s1 = s1, nn.concat(nodes)
  pooled = nn.global_avg_pool(s1)
  return nn.dense(pooled, weights["classifier"]["w"], weights["classifier"]["b"])


def test_runs_of_identical_cells():
  assert darts.cell_runs(_space(2)) == [[0, 1], [2], [3], [4], [5, 6]]
  # A stem wider than a cell output cannot be padded: cell 0 stays alone.
  assert darts.cell_runs(_space(1)) == [[0], [1], [2], [3], [4], [5, 6]]
  assert darts.cell_runs(_space(4, layers=8)) == [[0, 1], [2], [3, 4], [5], [6, 7]]


def _problem(num_nodes, ops=OPS_SMALL, layers=7):
  config = _space(num_nodes, ops, layers)
  key = jax.random.PRNGKey(num_nodes)
  weights = darts.init_weights(key, config, dtype=jnp.float64)
  arch = darts.init_arch(config, jnp.float64)
  # Distinct scalars, some switched off, so that every term is told apart.
  arch = jax.tree_util.tree_map(
      lambda a: jax.random.uniform(jax.random.fold_in(key, a.size), a.shape, a.dtype, 0.5, 1.5)
      * (jax.random.uniform(jax.random.fold_in(key, 7 * a.size), a.shape) > 0.15), arch)
  images = jax.random.normal(jax.random.fold_in(key, 1), (3, 8, 8, 3), jnp.float64)
  labels = jnp.array([0, 2, 1])
  return config, weights, arch, images, labels


def _loss(apply_fn, config, images, labels):
  def loss(params):
    logits = apply_fn(params["weights"], params["arch"], images, config)
    return nn.softmax_cross_entropy(logits, labels)
  return loss


def _tree_equal(a, b):
  same = jax.tree_util.tree_map(
      lambda u, v: u.shape == v.shape and bool(jnp.all(u == v)), a, b)
  return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(
      jax.tree_util.tree_leaves(same))


def _packed_apply(flat_weights, arch, images, config):
  """The network on its flat packed weights, as the search trains it."""
  return darts.apply(darts.unravel_weights(flat_weights, config), arch, images, config)


def test_remat_changes_neither_gradients_nor_curvature():
  """`space.remat` only moves work from memory to recomputation: loss,
  gradients and curvature are those of the network that keeps activations."""
  config, weights, arch, images, labels = _problem(2, ("skip_connect", "sep_conv_3x3"), 1)
  flat = ravel_pytree(darts.pack_weights(weights, config))[0]
  results = []
  for remat in (False, True):
    config.remat = remat
    results.append(jax.jit(lambda params, c=config.copy_and_resolve_references():
                           value_grad_curvature(_loss(_packed_apply, c, images, labels),
                                                params))({"weights": flat, "arch": arch}))
  for a, b in zip(jax.tree_util.tree_leaves(results[0]), jax.tree_util.tree_leaves(results[1])):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
  assert np.all(np.asarray(results[0][2]["weights"]) >= 0)
  assert np.count_nonzero(np.asarray(results[0][2]["weights"])) > 0


@pytest.mark.parametrize("num_nodes,scan_inputs", [(3, True), (2, False), (1, True)])
def test_packing_is_lossless_and_pads_with_zeros(num_nodes, scan_inputs):
  """unpack ∘ pack is the identity, and pack ∘ unpack of a flat vector gives
  it back: every entry outside the canonical weights is 0. (2 nodes without
  scanned inputs: a one-slot scan; 1 node: no scan, and a stem wider than a
  cell output, so cell 0 runs alone.)"""
  config = _space(num_nodes)
  config.scan_inputs = scan_inputs
  # Jitted: eager dispatch of the many small slices would dominate the test.
  pack = jax.jit(lambda w: ravel_pytree(darts.pack_weights(w, config))[0])
  unpack = jax.jit(lambda flat: darts.unpack_weights(darts.unravel_weights(flat, config),
                                                     config))
  weights = darts.init_weights(jax.random.PRNGKey(3), config)
  flat = darts.init_flat_weights(jax.random.PRNGKey(3), config)
  np.testing.assert_array_equal(pack(weights), flat)
  unpacked = unpack(flat)
  assert _tree_equal(unpacked, weights)
  np.testing.assert_array_equal(pack(unpacked), flat)
  canonical = sum(w.size for w in jax.tree_util.tree_leaves(weights))
  assert flat.size > canonical  # padding exists (else the check above is vacuous)
  assert np.count_nonzero(np.asarray(flat)) == np.count_nonzero(
      np.concatenate([np.ravel(w) for w in jax.tree_util.tree_leaves(weights)]))


def test_folded_scanned_network_equals_edge_by_edge():
  """Value, gradients (weights and scalars) and scalar curvature, in float64,
  of the network on its flat packed weights (as the search trains it) against
  the reference on the canonical tree. Three nodes: the node scan has a padded
  slot; 7 layers: both kinds of run. The flat gradient is 0 at every padded
  entry, so padding stays 0 under training. Ours recomputes its ops'
  activations in the backward pass (`remat`, the search config's default)."""
  config, weights, arch, images, labels = _problem(3)
  config.remat = True
  flat = ravel_pytree(darts.pack_weights(weights, config))[0]
  mask = {"weights": False, "arch": True}
  # Ours jitted (26 s here against 73 s eagerly); the unrolled reference stays
  # eager (it compiles for minutes).
  ours = jax.jit(lambda params: value_grad_curvature(
      _loss(_packed_apply, config, images, labels), params, probe_mask=mask))(
          {"weights": flat, "arch": arch})
  ref = value_grad_curvature(_loss(reference_network, config, images, labels),
                             {"weights": weights, "arch": arch}, probe_mask=mask)
  np.testing.assert_allclose(ours[0], ref[0], rtol=1e-10)
  grad_flat = ours[1]["weights"]
  grad_tree = darts.unpack_weights(darts.unravel_weights(grad_flat, config), config)
  np.testing.assert_array_equal(
      ravel_pytree(darts.pack_weights(grad_tree, config))[0], grad_flat)
  for a, b in zip(jax.tree_util.tree_leaves((grad_tree, ours[1]["arch"], ours[2]["arch"])),
                  jax.tree_util.tree_leaves((ref[1]["weights"], ref[1]["arch"],
                                             ref[2]["arch"]))):
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
  # The comparison is not vacuous: curvature reaches every cell type's
  # scalars, and gradients reach most weight leaves (those of switched-off
  # edges get none: ~15% of the scalars are 0).
  assert all(np.any(np.asarray(c) > 0) for c in jax.tree_util.tree_leaves(ours[2]["arch"]))
  nonzero = [np.any(np.asarray(g) != 0) for g in jax.tree_util.tree_leaves(grad_tree)]
  assert np.mean(nonzero) > 0.5


def test_darts_decisions_count_nodes_the_prior_left_exact():
  from configs import darts_cifar10_search  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.spaces import darts  # pylint: disable=import-outside-toplevel
  config = darts_cifar10_search.get_config()
  spec = darts.cell_spec(config.space)
  keep = {kind: np.zeros((spec.num_edges, len(spec.ops)), bool) for kind in ("normal", "reduce")}
  # normal node 2: exactly two edges with one op each; node 3: three survivors;
  # node 4: two ops on one edge; node 5: nothing.
  e = {edge: i for i, edge in enumerate(spec.edges)}
  keep["normal"][e[(0, 2)], 1] = keep["normal"][e[(1, 2)], 0] = True
  keep["normal"][e[(0, 3)], 1] = keep["normal"][e[(1, 3)], 2] = True
  keep["normal"][e[(2, 3)], 3] = True
  keep["normal"][e[(2, 4)], 1] = keep["normal"][e[(2, 4)], 2] = True
  state = hard_state(gamma={k: {"ops": np.ones_like(v, float)} for k, v in keep.items()},
                     keep={k: {"ops": v} for k, v in keep.items()})
  search = ml_collections.ConfigDict(dict(grouping="cell_type", top_k=2))
  genotype = {"normal": [], "reduce": []}
  decided = darts.decisions(config.space, genotype, state, search)
  normal = [d for d in decided if d["edge"].startswith("normal")]
  assert [d["decided_by"] for d in normal] == ["prior", "rank", "rank", "rank"]
  assert [d["empty"] for d in normal] == [False, False, False, True]
  assert all(d["empty"] for d in decided if d["edge"].startswith("reduce"))
