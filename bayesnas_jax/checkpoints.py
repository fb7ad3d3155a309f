"""Orbax checkpoints of the search state, with a small JSON of where the run is."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Interrupted(RuntimeError):
  """A launch ended early by `stop_after_steps` after a checkpoint: relaunching
  the same command resumes (exit status 3 from the launcher)."""


class Checkpointer:
  """Saves (state pytree, position dict) under `<workdir>/checkpoints`, and with
  `data_iterator` (a grain loader iterator) that iterator's state too."""

  def __init__(self, workdir: str, max_to_keep: int = 2, data_iterator=None):
    self._data = data_iterator
    names = ("state", "position") + (("data",) if data_iterator is not None else ())
    self._manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=names)

  def _extra(self, restore):
    if self._data is None:
      return {}
    from bayesnas_jax.data import streaming  # pylint: disable=import-outside-toplevel
    return {"data": (streaming.restore_args if restore else streaming.save_args)(self._data)}

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step: int, state, position: dict):
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position),
        **self._extra(restore=False)), force=True)
    self._manager.wait_until_finished()

  def restore(self, like_state):
    """Restores the latest checkpoint into arrays shaped like `like_state`."""
    step = self._manager.latest_step()
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like_state)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), position=ocp.args.JsonRestore(),
        **self._extra(restore=True)))
    return out["state"], out["position"]

  def close(self):
    self._manager.close()
