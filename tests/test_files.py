"""Atomic JSON files and JSON lines (bayesnas_jax/files.py)."""
import json
import os

import numpy as np
import pytest

from bayesnas_jax import files


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
