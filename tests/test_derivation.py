"""Tests of the derivation (bayesnas_jax/derivation.py): SPEC §4 "Derived cell" —
the top k pairs by γ among the kept ones, pruned origins and dead nodes, ties,
the per-edge rule (`search.derivation = "edges"` never puts two ops on one
edge), and the architecture records."""
import numpy as np
import pytest

from bayesnas_jax import derivation, prior
from bayesnas_jax.spaces.cell import CellSpec
from tests.darts_support import OPS, SPEC

EDGE = {edge: i for i, edge in enumerate(SPEC.edges)}
OP = {op: i for i, op in enumerate(OPS)}


def gamma_with(entries, fill=0.1):
  """[E, O] γ equal to `fill` except {(from, to, op): value}."""
  gamma = np.full((SPEC.num_edges, len(OPS)), fill)
  for (source, target, op), value in entries.items():
    gamma[EDGE[(source, target)], OP[op]] = value
  return gamma


def test_threshold_matches_prior():
  assert derivation.PRUNE_THRESHOLD == pytest.approx(prior.PRUNE_THRESHOLD, rel=1e-15)


def test_derive_picks_top_k_by_gamma_among_kept_only():
  gamma = gamma_with({(0, 2, "sep_conv_5x5"): 9.0, (1, 2, "max_pool_3x3"): 5.0,
                      (0, 2, "skip_connect"): 4.0, (1, 3, "dil_conv_5x5"): 3.0,
                      (2, 3, "avg_pool_3x3"): 2.0})
  keep = np.ones_like(gamma, bool)
  keep[EDGE[(0, 2)], OP["sep_conv_5x5"]] = False  # the largest γ on node 2 is pruned
  cell = derivation.derive_cell(gamma, keep, SPEC, k=2)
  node = {t: [e for e in cell["edges"] if e[2] == t] for t in SPEC.intermediate}
  assert node[2] == [["skip_connect", 0, 2], ["max_pool_3x3", 1, 2]]
  assert node[3] == [["dil_conv_5x5", 1, 3], ["avg_pool_3x3", 2, 3]]
  assert all(len(v) == 2 for v in node.values())
  assert cell["concat"] == [2, 3, 4, 5]
  one = derivation.derive_cell(gamma, keep, SPEC, k=1)
  assert [e for e in one["edges"] if e[2] in (2, 3)] == [["max_pool_3x3", 1, 2],
                                                        ["dil_conv_5x5", 1, 3]]


def test_derive_output_sorted_by_destination_source_op():
  rng = np.random.default_rng(0)
  gamma = rng.uniform(0, 1, (SPEC.num_edges, len(OPS)))
  cell = derivation.derive_cell(gamma, gamma > 0.3, SPEC, k=3)
  keys = [(t, s, OP[op]) for op, s, t in cell["edges"]]
  assert keys == sorted(keys) and len(keys) == 12


def test_pruned_origin_removes_the_edge():
  gamma = gamma_with({(0, 2, "sep_conv_3x3"): 9.0, (0, 2, "sep_conv_5x5"): 8.0,
                      (1, 2, "skip_connect"): 1.0})
  keep = np.ones_like(gamma, bool)
  origin = np.ones(SPEC.num_edges, bool)
  origin[EDGE[(0, 2)]] = False
  cell = derivation.derive_cell(gamma, keep, SPEC, origin_keep=origin)
  into_2 = [e for e in cell["edges"] if e[2] == 2]
  assert all(source == 1 for _, source, _ in into_2)
  assert into_2 == [["skip_connect", 1, 2], ["sep_conv_3x3", 1, 2]]  # γ tie → op order


def test_dead_node_drops_its_out_edges():
  # Node 2 has no kept input; its out-edges have the largest γ but must not survive.
  gamma = gamma_with({(2, 3, "sep_conv_3x3"): 9.0, (2, 4, "skip_connect"): 9.0,
                      (2, 5, "max_pool_3x3"): 9.0, (0, 3, "dil_conv_3x3"): 0.5})
  keep = gamma > derivation.PRUNE_THRESHOLD
  keep[EDGE[(0, 2)]] = keep[EDGE[(1, 2)]] = False
  cell = derivation.derive_cell(gamma, keep, SPEC)
  assert not any(2 in (s, t) for _, s, t in cell["edges"])
  assert cell["concat"] == [3, 4, 5]
  assert [e for e in cell["edges"] if e[2] == 3] == [["skip_connect", 0, 3],
                                                    ["dil_conv_3x3", 0, 3]]
  # Chain: 3 dies too when its only kept input comes from dead node 2.
  keep = np.zeros_like(keep)
  keep[EDGE[(2, 3)], OP["sep_conv_3x3"]] = True
  keep[EDGE[(3, 4)], OP["skip_connect"]] = True
  keep[EDGE[(1, 5)], OP["avg_pool_3x3"]] = True
  cell = derivation.derive_cell(gamma, keep, SPEC)
  assert cell == {"edges": [["avg_pool_3x3", 1, 5]], "concat": [5]}


def test_ties_broken_by_edge_then_op_and_deterministic():
  gamma = np.full((SPEC.num_edges, len(OPS)), 0.5)
  keep = np.ones_like(gamma, bool)
  keep[EDGE[(0, 2)], OP["skip_connect"]] = False
  cell = derivation.derive_cell(gamma, keep, SPEC)
  assert [e for e in cell["edges"] if e[2] == 2] == [["sep_conv_3x3", 0, 2],
                                                    ["sep_conv_5x5", 0, 2]]
  assert [e for e in cell["edges"] if e[2] == 5] == [["skip_connect", 0, 5],
                                                    ["sep_conv_3x3", 0, 5]]
  assert all(derivation.derive_cell(gamma, keep, SPEC) == cell for _ in range(3))
  gamma[EDGE[(1, 2)], OP["avg_pool_3x3"]] = np.nan  # NaN ranks last, never first
  gamma[EDGE[(0, 2)]] = np.nan
  assert [e for e in derivation.derive_cell(gamma, keep, SPEC)["edges"] if e[2] == 2] == [
      ["skip_connect", 1, 2], ["sep_conv_3x3", 1, 2]]


def test_derive_rejects_wrong_shape():
  with pytest.raises(ValueError, match=r"\(14, 7\)"):
    derivation.derive_cell(np.ones((14, 6)), np.ones((14, 6), bool), SPEC)


def test_edges_derivation_never_two_ops_on_one_edge():
  spec = CellSpec(("x", "y", "z"), 2, 2)  # inputs 0, 1; nodes 2, 3; 5 edges
  score = np.array([[9.0, 8.0, 0.1],   # 0→2: the two best pairs of node 2
                    [1.0, 0.5, 0.2],   # 1→2
                    [0.3, 7.0, 6.0],   # 0→3: two strong ops on one edge again
                    [0.2, 0.1, 0.4],   # 1→3
                    [5.0, 0.3, 0.2]])  # 2→3
  keep = np.ones_like(score, bool)
  pairs = derivation.derive_cell(score, keep, spec, k=2, rule="pairs")
  edges = derivation.derive_cell(score, keep, spec, k=2, rule="edges")
  assert [e for e in pairs["edges"] if e[2] == 2] == [["x", 0, 2], ["y", 0, 2]]
  for cell in (edges,):
    slots = [(e[1], e[2]) for e in cell["edges"]]
    assert len(slots) == len(set(slots))
  assert edges["edges"] == [["x", 0, 2], ["x", 1, 2], ["y", 0, 3], ["x", 2, 3]]
  with pytest.raises(ValueError, match="config.search.derivation"):
    derivation.derive_cell(score, keep, spec, rule="best")


def test_architecture_records_member_and_group_fields():
  spec = CellSpec(ops=("skip_connect", "max_pool_3x3"), num_nodes=2)  # 5 edges
  n, e, o = 3, spec.num_edges, len(spec.ops)
  ops = {"w": np.arange(n * e * o, dtype=np.float32).reshape(n, e, o),
         "H": np.ones((n, e, o)), "C": np.ones((n, e, o)), "omega": np.full((e, o), 2.0),
         "s": np.ones((e, o)), "gamma": np.arange(e * o).reshape(e, o) / 10.0,
         "kept": np.arange(e * o).reshape(e, o) % 2 == 0}
  origin = {"w": -np.ones((n, e)), "H": np.ones((n, e)), "C": np.ones((n, e)),
            "omega": np.ones((n, e)), "s": np.ones((n, e)), "gamma": np.ones((n, e)),
            "kept": np.zeros((n, e), bool)}
  records = derivation.architecture_records(4, "normal", spec, {"ops": ops, "origin": origin})
  assert len(records) == n * e * (o + 1)
  by_name = {r["name"]: r for r in records}
  assert len(by_name) == len(records)
  r = by_name["normal/cell2/2->3/max_pool_3x3"]  # edge 4 = 2->3, op 1
  assert r["w"] == float(ops["w"][2, 4, 1]) and r["gamma"] == pytest.approx(0.9)
  assert r["kept"] is False and r["round"] == 4 and (r["from"], r["to"]) == (2, 3)
  r0 = by_name["normal/cell1/0->2/origin"]
  assert r0["op"] == "origin" and r0["w"] == -1.0 and r0["kept"] is False
  assert set(r0) == {"round", "name", "cell_type", "cell", "from", "to", "op", "w", "H",
                     "C", "omega", "s", "gamma", "kept"}
  assert len(derivation.architecture_records(0, "n", spec, {"ops": ops})) == n * e * o
  with pytest.raises(ValueError, match="normal/ops"):
    derivation.architecture_records(0, "normal", spec, {"ops": dict(ops, gamma=np.ones((e,)))})
