"""The language-model search and the cell training resume through `loop.Run`: a
run stopped several times (`stop_after_steps`, mid-phase and across phases) and
relaunched ends bit-identical to an uninterrupted one."""
import pytest

from bayesnas_jax.checkpoints import Interrupted
from bayesnas_jax.lm import search as lm_search
from bayesnas_jax.lm import train as lm_train
from configs import darts_ptb_eval, darts_ptb_search
from tests.tests_support import write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  path = tmp_path_factory.mktemp("corpus")
  write_corpus(path)
  return path


def _quiet(_):
  pass


def _relaunch_until_done(run, config, workdir, stop_after):
  """Launches with `stop_after_steps` until the run completes; returns
  (summary, number of interruptions)."""
  stops = 0
  while True:
    config.stop_after_steps = stop_after
    try:
      return run(config, workdir, log=_quiet), stops
    except Interrupted:
      stops += 1


def _without_timings(summary):
  out = {k: v for k, v in summary.items() if k != "seconds"}
  if "rounds" in out:
    out["rounds"] = [{k: v for k, v in r.items() if not k.endswith("seconds")}
                     for r in out["rounds"]]
  return out


def _search_config(corpus):
  c = darts_ptb_search.get_config("cpu")
  c.data.path = str(corpus)
  c.space.size, c.space.num_nodes = 8, 2
  c.space.norm, c.space.arch_init = "none", "mean"
  c.input.batch_size, c.input.bptt, c.input.valid_tokens = 16, 5, 0
  c.input.random_length = False   # one window length: one compile of each step
  c.search.steps_per_round, c.search.rounds = 12, 2
  c.search.curvature_windows, c.search.horizon = 2, 3
  c.search.keep_last, c.search.penalty_update = True, "decoupled"
  c.train.steps, c.log_every_steps, c.checkpoint_every_steps = 10, 4, 5
  return c


def test_lm_search_resumes_bit_identical(corpus, tmp_path):
  whole = lm_search.run(_search_config(corpus), str(tmp_path / "a"), log=_quiet)
  resumed, stops = _relaunch_until_done(lm_search.run, _search_config(corpus),
                                        str(tmp_path / "b"), stop_after=7)
  assert stops >= 3           # stopped inside both rounds and the derived cell's training
  assert _without_timings(resumed) == _without_timings(whole)
  for name in ("genotype.json", "architecture.json"):
    assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_lm_cell_training_resumes_bit_identical_through_averaging(corpus, tmp_path):
  def config():
    e = darts_ptb_eval.get_config("cpu")
    e.data.path = str(corpus)
    e.space.size = 8
    e.train.genotype = str(tmp_path / "genotype.json")
    e.input.batch_size, e.input.bptt, e.input.valid_tokens = 16, 5, 0
    e.input.random_length = False
    e.train.steps_per_epoch, e.train.epochs, e.train.nonmono = 6, 8, 1
    e.train.learning_rate = 40.0     # noisy enough for the validation loss to stall
    e.checkpoint_every_steps, e.log_every_steps = 4, 3
    return e
  (tmp_path / "genotype.json").write_text(
      '{"recurrent": [["tanh", 0], ["relu", 1]], "concat": [1, 2]}')
  whole = lm_train.train_cell(config(), str(tmp_path / "x"), log=_quiet)
  assert whole["asgd_from_epoch"] is not None      # averaging began, and is resumed too
  resumed, stops = _relaunch_until_done(lm_train.train_cell, config(), str(tmp_path / "y"),
                                        stop_after=10)
  assert stops >= 3
  assert _without_timings(resumed) == _without_timings(whole)
