"""The recurrent-cell search (`bayesnas_jax.lm.search`): the cell derived from the
scores, and one-line stops for a missing corpus and for a non-finite loss."""
import jax
import numpy as np
import pytest

from bayesnas_jax.spaces import rnn
from bayesnas_jax.spaces.rnn import RNN_OPS as OPS
from tests.tests_support import hard_state


def test_derivation_keeps_one_input_per_node_by_score():
  spec = rnn.cell_spec(3)                       # edges 0→1 | 0→2 1→2 | 0→3 1→3 2→3
  score = np.zeros((spec.num_edges, len(OPS)))
  keep = np.ones_like(score, bool)
  score[0, 2] = 5.0                             # node 1: sigmoid from 0
  score[1, 0], score[2, 3] = 1.0, 2.0           # node 2: identity from 1 beats tanh from 0
  score[5, 1], score[4, 0] = 9.0, 3.0           # node 3: relu from 2 is pruned → tanh from 1
  keep[5, 1] = False
  state = hard_state(score={"rnn": {"ops": score}}, keep={"rnn": {"ops": keep}})
  genotype, decisions = rnn.derive(spec, state)
  assert genotype == {"recurrent": [["sigmoid", 0], ["identity", 1], ["tanh", 1]],
                      "concat": [1, 2, 3]}
  # Every node kept several pairs: each decision is the rank's, none empty.
  assert [d["decided_by"] for d in decisions] == ["rank"] * 3
  assert [d["survivors"] for d in decisions] == [4, 8, 11]
  only = np.zeros_like(keep)
  only[0, 2] = only[2, 3] = only[4, 0] = True  # one survivor per node
  _, decided = rnn.derive(spec, state.replace(keep={"rnn": {"ops": only}}))
  assert [d["decided_by"] for d in decided] == ["prior"] * 3
  assert rnn.genotype_literal(genotype) == (
      "Genotype(recurrent=[('sigmoid', 0), ('identity', 1), ('tanh', 1)], "
      "concat=range(1, 4))")
  keep[:, :] = False                            # everything pruned: best pair regardless
  pruned, decided = rnn.derive(spec, state)
  assert pruned["recurrent"][2] == ["relu", 2]
  assert all(d["empty"] and d["decided_by"] == "rank" for d in decided)  # said, not silent
  masks = np.asarray(rnn.genotype_masks(spec, genotype)["rnn"]["ops"][0])
  assert masks.sum() == 3 and masks[0, 2] == masks[2, 3] == masks[4, 0] == 1
  with pytest.raises(ValueError, match="node 2 cannot take"):
    rnn.genotype_masks(spec, {"recurrent": [["tanh", 0], ["tanh", 2], ["tanh", 0]],
                                    "concat": [1, 2, 3]})


def test_missing_corpus_folder_is_one_line(tmp_path, capsys):
  from configs import darts_ptb_search  # pylint: disable=import-outside-toplevel
  from bayesnas_jax import launcher  # pylint: disable=import-outside-toplevel
  config = darts_ptb_search.get_config("cpu")
  config.data.path = str(tmp_path / "nowhere")
  assert launcher.main(config, str(tmp_path / "run")) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: data.path: "), err
  assert not (tmp_path / "run").exists()


def test_non_finite_loss_stops_the_rnn_search_and_writes_nothing(tmp_path):
  from configs import darts_ptb_search  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.metrics import NonFiniteError  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.lm import search as lm_search  # pylint: disable=import-outside-toplevel
  words = [f"w{i}" for i in range(12)]
  for name in ("train.txt", "valid.txt", "test.txt"):
    (tmp_path / name).write_text("\n".join(" ".join(words[i:] + words[:i]) for i in range(12)))
  config = darts_ptb_search.get_config("cpu")
  config.data.path = str(tmp_path)
  config.space.size, config.space.num_nodes = 8, 2
  config.input.batch_size, config.input.bptt, config.input.random_length = 4, 5, False
  config.input.valid_tokens = 0
  config.search.steps_per_round, config.log_every_steps = 6, 3
  config.train.learning_rate = 1e200  # clipped steps of 2.5e199 overflow float64 too
  workdir = tmp_path / "run"
  with pytest.raises(NonFiniteError, match=r"^round 1: the loss turned non-finite .* at step"):
    lm_search.run(config, str(workdir), log=lambda _: None)
  for name in ("summary.json", "genotype.json", "architecture.json"):
    assert not (workdir / name).exists(), name


def test_within_node_step_keeps_one_of_two_redundant_pairs():
  """`search.within_node = "conditional_evidence"`: node 1's tanh and relu pairs
  carry the same feature (their Gauss–Newton block is a·11ᵀ), so given each
  other neither has evidence and one goes, the other re-fitted in its place;
  weak pairs go as under the diagonal test; an edge left with no op loses its
  origin. Node 2's one strong pair is kept."""
  from bayesnas_jax.lm import search as lm_search  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.search import hard  # pylint: disable=import-outside-toplevel
  spec = rnn.cell_spec(2)                      # edges 0→1, 0→2, 1→2; 4 ops each
  arch = jax.tree_util.tree_map(lambda a: 0.5 * a, rnn.init_arch(spec))
  state = hard.init_prior(arch, "cell_type")
  block = np.diag(np.full(12, 0.01))           # w²H = 0.0025 < λ: weak
  block[0:2, 0:2] = 4.0                        # (0→1, tanh) and (0→1, relu): one feature
  block[4 * 2 + 2, 4 * 2 + 2] = 4.0            # (1→2, sigmoid): strong
  within_node = lm_search._within_node  # pylint: disable=protected-access
  new, pruned = within_node(state, arch, block, spec, 0.1)
  keep = np.asarray(new.keep[rnn.KIND]["ops"])
  # Which copy stays is a tie that rounding breaks: only that one of them stays.
  assert keep[0, 0] != keep[0, 1]
  expected = np.zeros((3, 4), bool)
  expected[0, :2] = keep[0, :2]
  expected[2, 2] = True
  np.testing.assert_array_equal(keep, expected)
  np.testing.assert_array_equal(np.asarray(new.keep[rnn.KIND]["origin"]).reshape(-1),
                                [True, False, True])
  assert pruned == 12 - 2
