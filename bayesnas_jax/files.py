"""Everything written to disk as text: atomically, numpy and jax values as plain Python.

* `write_text`, `write_json`: the file is written to a temporary file in the
  same folder, then `os.replace`d over the target, so readers see the old file
  or the new one, never a partial one.
* `append_jsonl`: one JSON line per call (a single write call).
* `plain`: numpy / jax scalars and arrays (also inside dicts, lists) → Python types.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np


def plain(value):
  """numpy / jax scalars and arrays (also inside dicts, lists) → Python types."""
  if isinstance(value, dict):
    return {str(k): plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [plain(v) for v in value]
  if isinstance(value, np.generic) or hasattr(value, "__array__"):
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()
  return value


def _write_text_atomic(path, text):
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path, text):
  """Writes `text` to `path` atomically."""
  _write_text_atomic(path, text)


def write_json(path, obj, indent=1):
  """Writes `obj` as JSON atomically: readers see the old file or the new one.

  The object is serialised before anything is written, so a failure leaves
  the old file untouched and no temporary file behind.
  """
  _write_text_atomic(path, json.dumps(plain(obj), indent=indent) + "\n")


def append_jsonl(path, obj):
  """Appends `obj` as one JSON line (a single write call)."""
  line = json.dumps(plain(obj)) + "\n"
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a", encoding="utf-8") as f:
    f.write(line)
