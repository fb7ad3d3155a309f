"""Metrics to `metrics.jsonl` and TensorBoard event files, and a progress bar (tqdm)."""
from __future__ import annotations

import io
import json
import os
import sys
import time

import jax
import numpy as np
import tqdm


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
  """A phase's progress bar (tqdm): done/total, rate, ETA and the logged metrics;
  live on a terminal, and in a log file one line when forced (the log steps) and
  one at the end. Rates count from the first update on: the first step includes
  compilation."""

  def __init__(self, label: str, total: int, batch_size: int, stream=None):
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.batch_size = batch_size
    self.bar = tqdm.tqdm(total=max(total, 1), desc=label, unit="step", mininterval=0.5,
                         file=self.stream if self.tty else io.StringIO(), ascii=not self.tty,
                         dynamic_ncols=self.tty, leave=True)
    self.started = False

  def update(self, done: int, metrics: dict | None = None, force: bool = False):
    """Moves the bar to `done` steps; returns the rate in images per second."""
    if not self.started:
      self.started = True
      self.bar.initial, self.bar.n = done, done
      self.bar.start_t = self.bar.last_print_t = time.time()
    if metrics:
      self.bar.set_postfix_str("  ".join(f"{key} {float(_plain(value)):.4f}"
                                         for key, value in metrics.items()), refresh=False)
    self.bar.update(done - self.bar.n)
    elapsed = time.time() - self.bar.start_t
    rate = (done - self.bar.initial) * self.batch_size / elapsed if elapsed > 0 else 0.0
    finished = done >= self.bar.total
    if not self.tty and (force or finished):
      self.stream.write(str(self.bar) + (f"  {rate:.0f} img/s" if rate else "") + "\n")
      self.stream.flush()
    if finished:
      self.bar.close()
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
