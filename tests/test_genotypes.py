"""Genotype files (bayesnas_jax/genotypes.py): the DARTS `Genotype(...)` literal only
where every node has two inputs, round trips of DARTS_V2, and one-line errors
for bad files."""
import json

import pytest

from bayesnas_jax import genotypes
from tests.darts_support import DARTS_V2, DARTS_V2_DICT, SPEC


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
