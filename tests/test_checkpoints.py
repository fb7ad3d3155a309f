"""Checkpointer: what is saved comes back, and only the newest saves are kept."""
import jax.numpy as jnp
import numpy as np

from bayesnas_jax.checkpoints import Checkpointer


def test_save_and_restore_round_trip(tmp_path):
  state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray(7, jnp.int32),
           "nested": {"b": jnp.ones((4,), jnp.bfloat16)}}
  ck = Checkpointer(str(tmp_path), max_to_keep=2)
  assert ck.latest_step() is None
  for step in (1, 2, 3):
    ck.save(step, {**state, "w": state["w"] + step}, {"phase": 2, "step": step * 10})
  ck.close()
  ck = Checkpointer(str(tmp_path), max_to_keep=2)
  assert ck.latest_step() == 3
  like = {"w": jnp.zeros((2, 3)), "step": jnp.zeros((), jnp.int32),
          "nested": {"b": jnp.zeros((4,), jnp.bfloat16)}}
  restored, position = ck.restore(like)
  ck.close()
  assert position == {"phase": 2, "step": 30}
  np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3) + 3)
  assert int(restored["step"]) == 7 and restored["nested"]["b"].dtype == jnp.bfloat16
  kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert kept == ["2", "3"]
