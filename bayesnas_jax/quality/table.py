"""A tabular NAS benchmark read from the user's CSV file: accuracy by cell string.

NAS-Bench-201 (Dong & Yang 2020) and NATS-Bench's topology space list every
one of the 15,625 NB201 cells with its accuracy after a fixed training. This
module reads such a table from a CSV file the user supplies (the package ships
none) and scores searched cells from it without training:

* the layout `arch,<accuracy>` (one architecture column and one accuracy
  column), or a NATS-Bench export with an index column and several metrics,
  where `column` names the accuracy to read;
* the architecture column is the first of `ARCH_COLUMNS` present; every cell
  string must be an NB201 string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`.

A malformed file gives a one-line `ValueError` naming the file (and the line);
a cell that is not in the table gives one naming the cell.
"""
from __future__ import annotations

import csv
import math
from typing import NamedTuple

import numpy as np

from bayesnas_jax.spaces import nb201

ARCH_COLUMNS = ("arch", "arch_str", "architecture", "ArchitectureString")
_INDEX_COLUMNS = ("index", "idx", "arch_index", "")


class BenchmarkTable(NamedTuple):
  path: str
  column: str
  accuracy: dict  # canonical NB201 string -> accuracy

  def lookup(self, arch_string: str) -> float:
    """The table's accuracy of one NB201 cell (one-line error if absent)."""
    key = _canonical(arch_string, f"cell {arch_string!r}")
    if key not in self.accuracy:
      raise ValueError(f"--benchmark_table {self.path}: cell {arch_string!r} is not in the "
                       f"table ({len(self.accuracy)} cells)")
    return self.accuracy[key]

  def percentile(self, value: float) -> float:
    """Share of the table's cells below `value` (ties count half), in percent."""
    values = np.fromiter(self.accuracy.values(), np.float64)
    below = np.sum(values < value) + 0.5 * np.sum(values == value)
    return float(100.0 * below / values.size)

  def describe(self) -> dict:
    values = np.fromiter(self.accuracy.values(), np.float64)
    return {"file": self.path, "column": self.column, "cells": int(values.size),
            "best": float(values.max()), "median": float(np.median(values)),
            "mean": float(values.mean())}


def _canonical(text, what):
  try:
    return nb201.arch_string(nb201.parse_arch_string(text))
  except ValueError as err:
    raise ValueError(f"{what}: {err}") from None


def load(path: str, column: str | None = None) -> BenchmarkTable:
  """Reads the table at `path`; `column` is the accuracy column (None: the one
  numeric column besides the architecture and an index)."""
  where = f"--benchmark_table {path}"
  try:
    with open(path, newline="", encoding="utf-8") as f:
      rows = list(csv.reader(f))
  except OSError as err:
    raise ValueError(f"{where}: {err.strerror}") from None
  except UnicodeDecodeError:
    raise ValueError(f"{where}: expected a UTF-8 CSV file") from None
  if len(rows) < 2:
    raise ValueError(f"{where}: expected a header line and at least one cell")
  header = [h.strip() for h in rows[0]]
  arch_col = next((c for c in ARCH_COLUMNS if c in header), None)
  if arch_col is None:
    raise ValueError(f"{where}: expected an architecture column named one of "
                     f"{list(ARCH_COLUMNS)}, got columns {header}")
  a = header.index(arch_col)
  if column is None:
    candidates = [i for i, h in enumerate(header) if i != a and h not in _INDEX_COLUMNS]
    if len(candidates) > 1:
      candidates = [i for i in candidates if _numeric(rows[1][i:i + 1])]
    if len(candidates) != 1:
      raise ValueError(f"{where}: expected exactly one accuracy column beside {arch_col!r} "
                       f"(or --benchmark_column naming one), got columns {header}")
    c = candidates[0]
  else:
    if column not in header:
      raise ValueError(f"{where}: --benchmark_column {column!r} is not one of its columns "
                       f"{header}")
    c = header.index(column)
  accuracy = {}
  for line, row in enumerate(rows[1:], start=2):
    if not row or all(not x.strip() for x in row):
      continue
    if len(row) != len(header):
      raise ValueError(f"{where}: line {line} has {len(row)} fields, the header {len(header)}")
    key = _canonical(row[a].strip(), f"{where}: line {line}")
    try:
      value = float(row[c])
    except ValueError:
      raise ValueError(f"{where}: line {line}: expected a number in column "
                       f"{header[c]!r}, got {row[c]!r}") from None
    if not math.isfinite(value):
      raise ValueError(f"{where}: line {line}: expected a finite accuracy, got {row[c]!r}")
    if key in accuracy and accuracy[key] != value:
      raise ValueError(f"{where}: line {line}: cell {key} is listed twice with different "
                       f"accuracies")
    accuracy[key] = value
  return BenchmarkTable(path, header[c], accuracy)


def _numeric(fields):
  try:
    return bool(fields) and math.isfinite(float(fields[0]))
  except ValueError:
    return False


def score(table: BenchmarkTable, searched):
  """Per searched cell (dicts with "seed" and "nb201"): its table accuracy and
  percentile among all the table's cells; plus the mean and sd over seeds
  (sd with n − 1; 0 for one seed)."""
  rows = []
  for s in searched:
    accuracy = table.lookup(s["nb201"])
    rows.append({**s, "table_accuracy": accuracy,
                 "table_percentile": table.percentile(accuracy)})
  values = np.asarray([r["table_accuracy"] for r in rows], np.float64)
  summary = {"mean": float(values.mean()),
             "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
             "min": float(values.min()), "max": float(values.max()),
             "mean_percentile": float(np.mean([r["table_percentile"] for r in rows]))}
  return rows, summary
