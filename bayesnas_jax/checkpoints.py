"""Orbax checkpoints of the search state, with a small JSON of where the run is."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves (state pytree, position dict) under `<workdir>/checkpoints`."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "position"))

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step: int, state, position: dict):
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position)),
        force=True)
    self._manager.wait_until_finished()

  def restore(self, like_state):
    """Restores the latest checkpoint into arrays shaped like `like_state`."""
    step = self._manager.latest_step()
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like_state)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), position=ocp.args.JsonRestore()))
    return out["state"], out["position"]

  def close(self):
    self._manager.close()
