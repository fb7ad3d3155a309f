"""loop.Run: position and state come back after a relaunch; stop_after_steps
saves and raises; a non-finite value stops before anything is saved."""
import jax.numpy as jnp
import pytest

from bayesnas_jax.checkpoints import Interrupted
from bayesnas_jax.loop import Run
from bayesnas_jax.metrics import NonFiniteError


def _count_to(workdir, total, stop_after=0, every=0, bad_at=None):
  run = Run(str(workdir), {"x": jnp.zeros(()), "n": jnp.zeros((), jnp.int32)},
            checkpoint_every_steps=every, stop_after_steps=stop_after, log=lambda _: None)
  try:
    for i in range(total):
      if i < run.step("count"):
        continue
      value = jnp.asarray(jnp.nan if i == bad_at else 1.0)
      run.state = {"x": run.state["x"] + value, "n": run.state["n"] + 1}
      run.advance("count", {"loss": value})
    if not run.finished("count"):
      run.finish("count", total=total)
    return run.state, run.record("count"), run.resumed
  finally:
    run.close()


def test_relaunch_continues_where_it_stopped(tmp_path):
  with pytest.raises(Interrupted, match="stopped after 4 steps"):
    _count_to(tmp_path, 10, stop_after=4)
  with pytest.raises(Interrupted):
    _count_to(tmp_path, 10, stop_after=4)
  state, record, resumed = _count_to(tmp_path, 10, stop_after=4)
  assert resumed and record == {"total": 10}
  assert float(state["x"]) == 10.0 and int(state["n"]) == 10
  state, _, _ = _count_to(tmp_path, 10)            # finished: nothing runs again
  assert int(state["n"]) == 10


def test_non_finite_value_stops_before_a_save(tmp_path):
  with pytest.raises(NonFiniteError, match=r"count: the loss turned non-finite \(nan\) at step 3"):
    _count_to(tmp_path, 10, every=4, bad_at=2)
  assert not (tmp_path / "checkpoints").exists() or not any(
      p.name.isdigit() for p in (tmp_path / "checkpoints").iterdir())
