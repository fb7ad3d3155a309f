"""A resumable run: one state pytree, a JSON position, orbax checkpoints, the
non-finite watch and `stop_after_steps`.

A mode keeps everything it carries between steps in `run.state` (a pytree of a
fixed structure: what a later phase needs is there from the start) and names
its phases; the position counts each phase's steps and lists the finished ones
with what they recorded. Relaunching restores both, and the mode skips what is
done:

  run = Run(workdir, state, checkpoint_every_steps=500, stop_after_steps=0)
  for i in range(total):
    if i < run.step("train"):
      continue                      # done before the relaunch
    run.state = train_step(run.state, batch(i))
    run.advance("train", {"loss": run.state["loss"]})
  run.finish("train", seconds=12.0)

`advance` saves every `checkpoint_every_steps` steps and, after
`stop_after_steps` steps in one launch, saves and raises `Interrupted`; every
value handed to it is checked for NaN and infinity before a save, so a
non-finite run stops with `NonFiniteError` (phase, step, value) and leaves no
checkpoint of the bad state. Saving between steps and replaying the same data
order and keys makes a resumed run end bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import time

from bayesnas_jax.checkpoints import Checkpointer, Interrupted
from bayesnas_jax.metrics import FiniteWatch


class Run:
  """Position, checkpoints and the non-finite watch of one resumable run."""

  def __init__(self, workdir: str, state, *, checkpoint_every_steps: int = 0,
               stop_after_steps: int = 0, hint: str = "", log=print, position=None,
               data_iterator=None):
    """`position`: the mode's own JSON fields, saved and restored with the
    position; `data_iterator`: a grain iterator checkpointed with the state."""
    self.checkpointer = Checkpointer(workdir, data_iterator=data_iterator)
    self.position = {"saves": 0, "steps": {}, "finished": {}, "seconds": 0.0,
                     **(position or {})}
    self.state = state
    self.resumed = self.checkpointer.latest_step() is not None
    if self.resumed:
      self.state, self.position = self.checkpointer.restore(state)
      log(f"resuming from {workdir}: {len(self.position['finished'])} phases done")
    self._clock = time.perf_counter()
    self.every = checkpoint_every_steps
    self.stop_after = stop_after_steps
    self.hint = hint
    self.watch = FiniteWatch()
    self.launch_steps = 0

  def step(self, phase: str) -> int:
    """Steps of `phase` done so far (in this and earlier launches)."""
    return self.position["steps"].get(phase, 0)

  def finished(self, phase: str) -> bool:
    return phase in self.position["finished"]

  def record(self, phase: str) -> dict:
    """What `finish(phase, ...)` recorded."""
    return self.position["finished"][phase]

  def advance(self, phase: str, values: dict | None = None):
    """Counts one step of `phase` whose new state is in `self.state`."""
    step = self.step(phase)
    if values:
      self.watch.add(phase, step, values)
    self.position["steps"][phase] = step + 1
    self.launch_steps += 1
    stop = self.stop_after and self.launch_steps >= self.stop_after
    if stop or (self.every and (step + 1) % self.every == 0):
      self.save()
    if stop:
      raise Interrupted(f"stopped after {self.launch_steps} steps (stop_after_steps)")

  def check(self):
    """Raises NonFiniteError if a value handed to `advance` is not finite."""
    self.watch.check(self.hint)

  def finish(self, phase: str, **record):
    """Marks `phase` done with `record` (JSON values) and saves."""
    self.position["finished"][phase] = record
    self.save()

  def save(self):
    """Checks the pending values, then saves state and position; the position's
    "seconds" add up the time between saves over every launch."""
    self.check()
    now = time.perf_counter()
    self.position["seconds"] += now - self._clock
    self._clock = now
    self.position["saves"] += 1
    self.checkpointer.save(self.position["saves"], self.state, self.position)

  def close(self):
    self.checkpointer.close()
