"""Tests of derivation and export (bayesnas_jax/derivation.py, genotypes.py, files.py,
plots.py): SPEC §4 "Derived cell"."""
import json
import os
import re

import numpy as np
import pytest

from bayesnas_jax import derivation, files, genotypes, plots, prior
from bayesnas_jax.spaces.cell import CellSpec

OPS = genotypes.DARTS_OP_NAMES
SPEC = CellSpec(ops=OPS)  # 4 intermediate nodes, 14 edges
EDGE = {edge: i for i, edge in enumerate(SPEC.edges)}
OP = {op: i for i, op in enumerate(OPS)}

# DARTS_V2 (Liu et al., 2019, the cell of the DARTS paper) as a literal.
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=range(2, 6))")
DARTS_V2_DICT = {
    "normal": [["sep_conv_3x3", 0, 2], ["sep_conv_3x3", 1, 2], ["sep_conv_3x3", 0, 3],
               ["sep_conv_3x3", 1, 3], ["skip_connect", 0, 4], ["sep_conv_3x3", 1, 4],
               ["skip_connect", 0, 5], ["dil_conv_3x3", 2, 5]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["max_pool_3x3", 0, 2], ["max_pool_3x3", 1, 2], ["max_pool_3x3", 1, 3],
               ["skip_connect", 2, 3], ["max_pool_3x3", 0, 4], ["skip_connect", 2, 4],
               ["max_pool_3x3", 1, 5], ["skip_connect", 2, 5]],
    "reduce_concat": [2, 3, 4, 5],
}


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


def _two_per_node(op="sep_conv_3x3"):
  return {"edges": [[op, s, t] for t in SPEC.intermediate for s in (t - 2, t - 1)],
          "concat": list(SPEC.intermediate)}


def test_literal_only_with_two_inputs_per_node(tmp_path):
  full = _two_per_node()
  genotype = genotypes.genotype_from_cells(full, full)
  assert set(genotype) == set(genotypes.GENOTYPE_KEYS)
  literal = genotypes.darts_genotype_literal(genotype)
  assert literal.startswith("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ")
  assert literal.count("range(2, 6)") == 2
  short = {"edges": full["edges"][1:], "concat": full["concat"]}
  assert genotypes.darts_genotype_literal(genotypes.genotype_from_cells(full, short)) is None
  extra = {"edges": full["edges"] + [["skip_connect", 0, 5]], "concat": full["concat"]}
  assert genotypes.darts_genotype_literal(genotypes.genotype_from_cells(extra, full)) is None
  part = dict(genotype, reduce_concat=[3, 5])
  assert "reduce_concat=[3, 5]" in genotypes.darts_genotype_literal(part)
  assert genotypes.write_genotype(tmp_path, genotypes.genotype_from_cells(short, full)) is None
  assert not (tmp_path / "genotype_darts.txt").exists()


def test_darts_v2_round_trip(tmp_path):
  source = tmp_path / "darts_v2.txt"
  source.write_text(DARTS_V2 + "\n")
  genotype = genotypes.load_genotype(source)
  assert genotype == DARTS_V2_DICT
  literal = genotypes.write_genotype(tmp_path, genotype)
  assert literal == (tmp_path / "genotype_darts.txt").read_text().strip()
  assert genotypes.load_genotype(tmp_path / "genotype_darts.txt") == DARTS_V2_DICT
  assert genotypes.load_genotype(tmp_path / "genotype.json") == DARTS_V2_DICT
  # An assignment (as in DARTS' genotypes.py) and positional fields also parse.
  source.write_text("DARTS_V2 = " + DARTS_V2.replace("normal=", "").replace(
      "normal_concat=", ""))
  assert genotypes.load_genotype(source) == DARTS_V2_DICT


BAD = {
    "garbage.txt": "this is not a genotype",
    "call.txt": "__import__('os').system('touch {dir}/HACKED')",
    "missing.json": json.dumps({"normal": [], "reduce": [], "normal_concat": []}),
    "op.json": json.dumps(dict(DARTS_V2_DICT, normal=[["conv_7x7", 0, 2]])),
    "order.json": json.dumps(dict(DARTS_V2_DICT, reduce=[["skip_connect", 3, 3]])),
    "list.json": "[1, 2]",
    "odd.txt": DARTS_V2.replace("('dil_conv_3x3', 2)], normal_concat", "], normal_concat"),
    "range.txt": DARTS_V2.replace("range(2, 6)", "range('a')"),
    "broken.json": '{"normal": [',
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_load_genotype_bad_file_one_line_error(tmp_path, name):
  path = tmp_path / name
  path.write_text(BAD[name].replace("{dir}", str(tmp_path)))
  with pytest.raises(ValueError) as info:
    genotypes.load_genotype(path)
  message = str(info.value)
  assert "\n" not in message and str(path) in message and "Genotype(...)" in message
  assert not (tmp_path / "HACKED").exists()


def test_load_genotype_missing_file(tmp_path):
  with pytest.raises(ValueError, match="nope.json.*cannot|nope.json.*No such"):
    genotypes.load_genotype(tmp_path / "nope.json")


def test_write_json_atomic_and_plain_types(tmp_path, monkeypatch):
  path = tmp_path / "out" / "a.json"
  obj = {"f32": np.float32(0.5), "i64": np.int64(7), "b": np.bool_(True),
         "arr": np.arange(3, dtype=np.int32), "nested": [(np.float64(1.5),)], 3: "k"}
  files.write_json(path, obj)
  assert os.listdir(path.parent) == ["a.json"]
  assert json.loads(path.read_text()) == {"f32": 0.5, "i64": 7, "b": True, "arr": [0, 1, 2],
                                          "nested": [[1.5]], "3": "k"}
  with pytest.raises(TypeError):
    files.write_json(path, {"bad": object()})
  assert os.listdir(path.parent) == ["a.json"]  # nothing left behind …
  assert json.loads(path.read_text())["i64"] == 7  # … and the old content intact
  def failing_replace(src, dst):
    raise OSError("disk full")
  monkeypatch.setattr(os, "replace", failing_replace)
  with pytest.raises(OSError, match="disk full"):
    files.write_json(path, {"new": 1})
  monkeypatch.undo()
  assert os.listdir(path.parent) == ["a.json"]  # the temporary file was removed
  assert json.loads(path.read_text())["i64"] == 7
  jax_numpy = pytest.importorskip("jax.numpy")
  files.write_json(path, {"x": jax_numpy.ones((2,)), "y": jax_numpy.float32(2)})
  assert json.loads(path.read_text()) == {"x": [1.0, 1.0], "y": 2.0}


def test_append_jsonl(tmp_path):
  path = tmp_path / "m.jsonl"
  files.append_jsonl(path, {"step": np.int32(1), "loss": np.float32(0.25)})
  files.append_jsonl(path, {"step": 2})
  lines = path.read_text().splitlines()
  assert [json.loads(line) for line in lines] == [{"step": 1, "loss": 0.25}, {"step": 2}]


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


def _png_and_svg_texts(prefix):
  """Checks the PNG; returns the strings of the SVG's <text> elements."""
  png = open(prefix + ".png", "rb").read()
  svg = open(prefix + ".svg", encoding="utf-8").read()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
  return set(re.findall(r"<text[^>]*>([^<]*)</text>", svg))


def test_plot_cell_png_and_svg(tmp_path):
  cell = {"edges": [list(e) for e in DARTS_V2_DICT["normal"]] + [["avg_pool_3x3", 0, 2]],
          "concat": [2, 3, 4, 5]}  # a parallel op on 0->2 too
  prefix = str(tmp_path / "plots" / "normal_cell")
  plots.plot_cell(cell, prefix, "DARTS_V2 normal cell")
  texts = _png_and_svg_texts(prefix)
  assert {"sep_conv_3x3", "skip_connect", "dil_conv_3x3", "avg_pool_3x3",
          "DARTS_V2 normal cell", "2", "5"} <= texts
  assert "max_pool_3x3" not in texts


def test_plot_gamma_png_and_svg(tmp_path):
  rng = np.random.default_rng(1)
  gamma = 10.0 ** rng.uniform(-3, 1, (SPEC.num_edges, len(OPS)))
  gamma[0, 0] = np.inf
  gamma[0, 1] = np.nan
  prefix = str(tmp_path / "gamma")
  plots.plot_gamma(gamma, gamma > derivation.PRUNE_THRESHOLD, SPEC, prefix, "γ heatmap")
  texts = _png_and_svg_texts(prefix)
  assert set(OPS) <= texts and "2-&gt;5" in texts and "inf" in texts
  assert any("1/(2πe)" in t for t in texts)
