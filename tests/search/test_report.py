"""`search.report`: the per-round records and architecture.json a search leaves."""
import json
import types

import numpy as np

from bayesnas_jax.search import report
from bayesnas_jax.spaces.cell import CellSpec


def _records(round_, spec):
  rng = np.random.default_rng(round_)
  shape = (1, spec.num_edges, len(spec.ops))
  return {"c": {"origin": {"w": rng.normal(size=shape[:2]), "H": rng.uniform(size=shape[:2]),
                           "gamma": rng.uniform(size=shape[1:2]),
                           "kept": np.ones(shape[1:2], bool)},
                "ops": {"w": rng.normal(size=shape), "H": rng.uniform(size=shape),
                        "gamma": rng.uniform(size=shape[1:]),
                        "kept": rng.uniform(size=shape[1:]) > 0.5}}}


def test_rounds_are_collected_in_order_with_every_scalar(tmp_path):
  spec = CellSpec(ops=("a", "b", "c"), num_nodes=2, num_inputs=1)
  space = types.SimpleNamespace(cells={"c": spec})
  records = {}
  for round_ in (10, 2, 0):          # written out of order, and past round 9
    records[round_] = _records(round_, spec)
    report.write_round(str(tmp_path), round_, space, records[round_], clamped=round_)
  decisions = [{"edge": "c/0->1", "decided_by": "prior"}]
  report.write_architecture(str(tmp_path), spec, 0.05, "cell_type",
                            {"decided_by_prior": 1, "decided_by_rank": 0,
                             "decisions": decisions, "other": "not copied"})
  with open(tmp_path / "architecture.json", encoding="utf-8") as f:
    written = json.load(f)
  assert written["ops"] == ["a", "b", "c"] and written["edges"] == [[0, 1], [0, 2], [1, 2]]
  assert written["decisions"] == decisions and "other" not in written
  assert [r["round"] for r in written["rounds"]] == [0, 2, 10]
  for r in written["rounds"]:
    assert r["clamped_curvature"] == r["round"]
    ops = records[r["round"]]["c"]["ops"]
    scalars = [s for s in r["scalars"] if s["op"] != "origin"]
    assert len(scalars) == spec.num_edges * len(spec.ops)
    for s in scalars:
      e, o = spec.edges.index((s["from"], s["to"])), spec.ops.index(s["op"])
      assert s["w"] == ops["w"][0, e, o] and s["H"] == ops["H"][0, e, o]
      assert s["gamma"] == ops["gamma"][e, o] and s["kept"] == bool(ops["kept"][e, o])
