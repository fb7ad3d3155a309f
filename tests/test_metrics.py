"""Metric records, the progress line and the non-finite watch."""
import io
import json

import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import metrics


def test_metric_writer_appends_one_json_record_per_write(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(3, "train", {"loss": jnp.float32(1.5), "acc": np.float64(0.25)}, epoch=1)
  writer.write(4, "train", {"loss": jnp.asarray([1.0, 2.0])})
  writer.close()
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == [
      {"step": 3, "phase": "train", "epoch": 1, "loss": 1.5, "acc": 0.25},
      {"step": 4, "phase": "train", "loss": [1.0, 2.0]}]


def test_progress_off_a_terminal_prints_at_the_end_or_when_forced():
  stream = io.StringIO()
  progress = metrics.Progress("train", total=10, batch_size=4, stream=stream)
  progress.update(1)
  progress.update(5)
  assert stream.getvalue() == ""
  progress.update(6, {"loss": 0.5}, force=True)
  rate = progress.update(10)
  lines = stream.getvalue().splitlines()
  assert len(lines) == 2 and lines[0].startswith("train") and "6/10" in lines[0]
  assert "loss 0.5000" in lines[0]
  assert "10/10" in lines[1] and "100%" in lines[1]
  assert rate > 0 and f"{rate:.0f} img/s" in lines[1]  # 9 steps of 4 images since the first


def test_finite_watch_names_the_phase_step_and_value():
  watch = metrics.FiniteWatch()
  watch.check()                                   # nothing pending
  for step in range(3):
    watch.add("round 1", step, {"loss": jnp.float32(1.0), "curvature": {"a": jnp.ones(3)}})
  watch.check()
  watch.add("round 1", 3, {"loss": jnp.float32(2.0)})
  watch.add("round 1", 4, {"loss": jnp.float32(jnp.inf)})
  watch.add("round 1", 5, {"curvature": {"a": jnp.asarray([1.0, jnp.nan])}})
  with pytest.raises(metrics.NonFiniteError,
                     match=r"round 1: the loss turned non-finite \(inf\) at step 5; "
                           r"stopped, nothing written; lower the rate"):
    watch.check("lower the rate")
  watch.add("curvature", 0, {"curvature": {"a": jnp.asarray([1.0, jnp.nan])}})
  with pytest.raises(metrics.NonFiniteError, match=r"curvature turned non-finite \(NaN/inf\)"):
    watch.check()
