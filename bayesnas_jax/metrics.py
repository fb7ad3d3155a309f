"""Metrics to `metrics.jsonl` and TensorBoard event files, and a progress line."""
from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np


def _plain(value):
  if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "__array__"):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()
  return value


class MetricWriter:
  """Appends one JSON object per record to metrics.jsonl and writes scalars to
  TensorBoard (tensorboardX) under `<workdir>/tensorboard`."""

  def __init__(self, workdir: str, tensorboard: bool = True):
    self._enabled = jax.process_index() == 0  # one writer in multi-host runs
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if tensorboard and self._enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, tag: str, scalars: dict, **fields):
    if not self._enabled:
      return
    record = {"step": int(step), "phase": tag, **fields,
              **{k: _plain(v) for k, v in scalars.items()}}
    with open(self._path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for key, value in scalars.items():
        self._tb.add_scalar(f"{tag}/{key}", float(_plain(value)), int(step))

  def close(self):
    if self._tb is not None:
      self._tb.close()


class Progress:
  """A one-line progress bar for a phase: done/total, rate, ETA and metrics."""

  def __init__(self, label: str, total: int, batch_size: int, stream=None):
    self.label, self.total, self.batch_size = label, max(total, 1), batch_size
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.start = time.perf_counter()
    self.first_done = None

  def update(self, done: int, metrics: dict | None = None, force: bool = False):
    now = time.perf_counter()
    if self.first_done is None:
      # The first step includes compilation; rates count from after it.
      self.first_done, self.first_time = done, now
    steps = done - self.first_done
    rate = steps * self.batch_size / max(now - self.first_time, 1e-9) if steps else 0.0
    eta = (self.total - done) * self.batch_size / rate if rate else float("nan")
    width = 24
    filled = int(width * done / self.total)
    parts = [f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}"]
    for key, value in (metrics or {}).items():
      parts.append(f"{key} {float(_plain(value)):.4f}")
    if rate:
      parts.append(f"{rate:.0f} img/s")
    if eta == eta:
      parts.append(f"eta {int(eta) // 60}m{int(eta) % 60:02d}s")
    line = "  ".join(parts)
    if self.tty:
      self.stream.write("\r" + line + ("\n" if done >= self.total else ""))
    elif force or done >= self.total:
      self.stream.write(line + "\n")
    self.stream.flush()
    return rate


class NonFiniteError(ValueError):
  """A loss, gradient norm or curvature turned NaN or infinite during a run."""


class FiniteWatch:
  """Checks per-step device values (loss, gradient norm, curvature) for NaN and
  infinity, many steps in one transfer: `add` keeps the step's arrays on the
  device, `check` fetches everything added since the last check and raises
  `NonFiniteError` naming the phase, the first bad step and the value. Call
  `check` before anything is saved or written, so a non-finite run leaves no
  checkpoint or result behind it."""

  def __init__(self):
    self._pending = []

  def add(self, phase: str, step: int, values: dict):
    self._pending.append((phase, step, values))

  def check(self, hint: str = ""):
    if not self._pending:
      return
    pending, self._pending = self._pending, []
    fetched = jax.device_get([values for _, _, values in pending])
    for (phase, step, _), values in zip(pending, fetched):
      for name, value in values.items():
        leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(value)]
        if not all(np.all(np.isfinite(v)) for v in leaves):
          shown = float(leaves[0].ravel()[0]) if leaves and leaves[0].size == 1 else "NaN/inf"
          raise NonFiniteError(
              f"{phase}: the {name} turned non-finite ({shown}) at step {step + 1}; "
              f"stopped, nothing written{'; ' + hint if hint else ''}")
