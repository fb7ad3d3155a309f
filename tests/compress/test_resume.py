"""Structured compression resumes through `loop.Run`: a run stopped several times by
`stop_after_steps` (mid-epoch in the baseline, inside the rounds and inside the
fine-tuning) and relaunched ends exactly as the uninterrupted run."""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bayesnas_jax import data
from bayesnas_jax.checkpoints import Interrupted
from bayesnas_jax.compress import run as run_lib
from configs import compress_lenet300_mnist
from tests.tests_support import write_tiny_idx

STEPS = 4  # 64 training examples in batches of 16


def _config(path, stop_after_steps=0):
  config = compress_lenet300_mnist.get_config()
  config.data.path = str(path)
  config.data.source = "idx"
  config.input.batch_size = 16
  config.train.baseline_epochs = 1
  config.compress.rounds = 2
  config.compress.epochs_per_round = 1
  config.compress.curvature_batches = 2
  config.compress.finetune_epochs = 2
  config.compress.lambda_ = 1e-8  # prunes some units of the tiny network, not all
  config.stop_after_steps = stop_after_steps
  return config


def _position(workdir):
  """The JSON position of the latest checkpoint in `workdir`."""
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  item_names=("state", "position"))
  try:
    return manager.restore(manager.latest_step(), args=ocp.args.Composite(
        position=ocp.args.JsonRestore()))["position"]
  finally:
    manager.close()


@pytest.fixture(name="shared_steps")
def _shared_steps(monkeypatch):
  """One compilation of the step functions for every launch (they depend on the
  model, the groups and the config, never on stop_after_steps)."""
  cache = {}
  make = run_lib._make_steps  # pylint: disable=protected-access

  def cached(model, config, kinds):
    key = (repr(model), repr(kinds),
           json.dumps({k: v for k, v in config.to_dict().items() if k != "stop_after_steps"},
                      sort_keys=True, default=str))
    if key not in cache:
      cache[key] = make(model, config, kinds)
    return cache[key]

  monkeypatch.setattr(run_lib, "_make_steps", cached)


def test_interrupted_compression_ends_bit_identical(tmp_path, shared_steps):
  del shared_steps
  write_tiny_idx(str(tmp_path))
  whole = str(tmp_path / "whole")
  run_lib.run_compress(_config(tmp_path), whole, log=lambda _: None)

  parts = str(tmp_path / "parts")
  stops = []
  for _ in range(20):
    try:
      run_lib.run_compress(_config(tmp_path, stop_after_steps=3), parts, log=lambda _: None)
      break
    except Interrupted:
      position = _position(parts)
      unfinished = [(phase, step) for phase, step in position["steps"].items()
                    if phase not in position["finished"]]
      stops.append(unfinished[0] if unfinished else ("after", max(position["steps"].values())))
  # Every 3 steps of 4-step epochs: mid-epoch in the baseline, in both rounds and in
  # both fine-tuning epochs; one stop at the end of round 2, before its update.
  assert stops == [("baseline", 3), ("round 1", 2), ("round 2", 1), ("round 2", 4),
                   ("fine-tune", 3), ("fine-tune", 6)], stops

  a, b = (json.loads(open(os.path.join(d, "summary.json"), encoding="utf-8").read())
          for d in (whole, parts))
  assert a["architecture_after"] != a["architecture_before"]  # something was pruned
  assert len(a["rounds"]) == 2
  del a["seconds"], b["seconds"]  # timing
  assert a == b
  for name in ("layers.md", "compressed_model.json"):
    assert (open(os.path.join(whole, name), encoding="utf-8").read()
            == open(os.path.join(parts, name), encoding="utf-8").read())
  weights = [jax.tree_util.tree_leaves(ocp.StandardCheckpointer().restore(
      os.path.join(d, "compressed"))) for d in (whole, parts)]
  assert len(weights[0]) == len(weights[1]) > 0
  for x, y in zip(*weights):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("field", ["checkpoint_every_steps", "stop_after_steps"])
def test_loop_fields_are_checked(field):
  config = compress_lenet300_mnist.get_config()
  config[field] = -1
  with pytest.raises(ValueError, match=f"config.{field}: expected an integer >= 0"):
    run_lib.validate(config)
