"""Method options of the HARD update (`bayesnas_jax.search.hard`, SPEC §7), each on a
hand-made case where it must change what it claims to change
(docs/method_options.md; QUALITY.md has the benchmark evidence for the defaults).

* `search.zero_curvature`: a group with H = 0 is never pruned under "keep"
  (γ explodes) and is pruned under "prune".
* `search.rank_by = "saliency"` ranks by w²H where γ would pick another op.
* `search.keep_last`: where the rule prunes every remaining pair into a node,
  the best alive one stays.
"""
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax.search import hard
from bayesnas_jax.spaces import rnn
from bayesnas_jax.spaces.cell import CellSpec
from bayesnas_jax.spaces.rnn import RNN_OPS as OPS


SPEC = CellSpec(("a", "b"), 2, 1)  # 3 edges: 0→1, 0→2, 1→2


def _update(h_ops, w_ops=None, **options):
  arch = {"c": {"origin": jnp.ones((1, 3)),
                "ops": jnp.asarray(w_ops if w_ops is not None else np.full((1, 3, 2), 0.8),
                                   jnp.float32)}}
  curvature = {"c": {"origin": jnp.ones((1, 3)), "ops": jnp.asarray(h_ops, jnp.float32)}}
  state = hard.init_prior(arch, "cell_type")
  return hard.hard_update(arch, curvature, state, spec=SPEC, lambda_w=0.01,
                          grouping="cell_type", dependency="edge_only", **options)


def test_zero_curvature_keep_versus_prune():
  h = np.ones((1, 3, 2), np.float32)
  h[0, 1, 0] = 0.0  # edge 0→2, op "a": the loss does not feel it
  kept_state, kept_records, _ = _update(h, zero_curvature="keep")
  pruned_state, _, _ = _update(h, zero_curvature="prune")
  switch = np.asarray(kept_records["c"]["ops"]["s"])
  # Literal eqs. 18–19: ω at its floor, so its switch explodes and it is kept.
  assert switch[1, 0] > 1e6 and switch[1, 0] == switch.max()
  assert bool(kept_state.keep["c"]["ops"][1, 0])
  assert not bool(pruned_state.keep["c"]["ops"][1, 0])
  # Everything informed is treated alike by both options.
  keep_a = np.asarray(kept_state.keep["c"]["ops"])
  keep_b = np.asarray(pruned_state.keep["c"]["ops"])
  mask = np.ones_like(keep_a)
  mask[1, 0] = False
  np.testing.assert_array_equal(keep_a[mask], keep_b[mask])


def test_rank_by_saliency_orders_by_w_squared_h():
  # Edge 0→1: op a has the larger |w| but tiny H; op b the larger w²H.
  w = np.full((1, 3, 2), 0.8, np.float32)
  h = np.ones((1, 3, 2), np.float32)
  w[0, 0] = [0.9, 0.5]
  h[0, 0] = [1e-3, 1.0]  # w²H: 8.1e-4 versus 0.25
  state_g, _, _ = _update(h, w, rank_by="gamma")
  state_s, _, _ = _update(h, w, rank_by="saliency")
  assert np.argmax(np.asarray(state_g.score["c"]["ops"][0])) == 0  # γ reads 1/H
  assert np.argmax(np.asarray(state_s.score["c"]["ops"][0])) == 1
  np.testing.assert_allclose(np.asarray(state_s.score["c"]["ops"]), w[0] ** 2 * h[0],
                             rtol=1e-6)


def test_keep_last_keeps_each_node_its_best_pair_and_marks_it():
  """search.keep_last: where the rule prunes every remaining pair into a node,
  the best alive one by the rank score stays, with its origin, marked restored;
  a node with a survivor of its own and a node already empty are untouched."""
  from bayesnas_jax.search import hard  # pylint: disable=import-outside-toplevel
  spec = rnn.cell_spec(3)                       # edges 0→1 | 0→2 1→2 | 0→3 1→3 2→3
  arch = rnn.init_arch(spec)
  rng = np.random.default_rng(0)
  w = rng.uniform(0.5, 1.0, (1, spec.num_edges, len(OPS)))
  w[0, 1, 2] = 3.0                              # node 2 keeps (sigmoid, 0) on its own
  arch = {"rnn": {"origin": jnp.ones((1, spec.num_edges)), "ops": jnp.asarray(w)}}
  curvature = {"rnn": {"origin": jnp.full((1, spec.num_edges), 10.0),   # origins stay
                       "ops": jnp.asarray(rng.uniform(0.5, 1.0, w.shape))}}
  state = hard.init_prior(arch, "cell_type")
  ops = state.keep["rnn"]["ops"].at[3:, :].set(False).at[4, 1].set(True).at[5, 3].set(
      True)                                     # node 3: only (relu, 1) and (identity, 2) alive
  state = state.replace(keep={"rnn": {**state.keep["rnn"], "ops": ops}})
  kwargs = dict(spec=spec, lambda_w=2.0, grouping="cell_type", dependency="full",
                rank_by="saliency", prune_rule="evidence")   # prunes where w²H ≤ 2
  plain, _, _ = hard.hard_update(arch, curvature, state, **kwargs)
  new, records, _ = hard.hard_update(arch, curvature, state, keep_last=True, **kwargs)
  keep = np.asarray(new.keep["rnn"]["ops"])
  restored = np.asarray(records["rnn"]["ops"]["restored"])
  score = np.asarray(new.score["rnn"]["ops"])
  assert not np.asarray(plain.keep["rnn"]["ops"])[[0, 3, 4, 5]].any()
  # Node 1: every pair pruned → its best by w²H stays.
  assert keep[0].sum() == 1 and keep[0, np.argmax(score[0])] and restored[0].sum() == 1
  # Node 2: (sigmoid, 0) survives by the rule itself; nothing restored.
  assert keep[1, 2] and keep[1:3].sum() == 1 and not restored[1:3].any()
  # Node 3: the better of its two alive pairs, not the best of all its pairs.
  best = (4, 1) if score[4, 1] > score[5, 3] else (5, 3)
  assert keep[3:6].sum() == 1 and keep[best] and restored[best]
  assert np.asarray(new.keep["rnn"]["origin"])[[0, 1, best[0]]].all()
  with pytest.raises(ValueError, match="keep_last"):
    hard.hard_update(arch, curvature, state, **{**kwargs, "grouping": "none"}, keep_last=True)
