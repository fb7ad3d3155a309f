"""The launcher: its mode table, exit statuses and one-line errors."""
import json

import ml_collections
import pytest

from bayesnas_jax import launcher
from bayesnas_jax.checkpoints import Interrupted
from configs import darts_ptb_search, nb201_cifar10_search


@pytest.mark.parametrize("name", sorted(launcher.MODES))
def test_every_mode_names_functions_that_exist(name):
  mode = launcher.MODES[name]
  assert callable(launcher.resolve(mode.validate))
  assert callable(launcher.resolve(mode.run))


def test_unknown_mode_is_one_line_naming_the_field(tmp_path, capsys):
  config = ml_collections.ConfigDict({"mode": "serach"})
  assert launcher.main(config, str(tmp_path / "run")) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "config.mode" in err[0] and "'serach'" in err[0]
  assert not (tmp_path / "run").exists()


def test_a_workdir_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys):
  path = tmp_path / "file"
  path.write_text("x")
  config = darts_ptb_search.get_config("cpu")
  config.data.path = str(tmp_path)
  assert launcher.main(config, str(path)) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--workdir" in err[0]
  assert path.read_text() == "x"


def test_a_mode_validates_before_it_runs(tmp_path, capsys):
  config = nb201_cifar10_search.get_config("tiny")
  config.search.lambda_w = -1.0
  assert launcher.main(config, str(tmp_path / "run")) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "config.search.lambda_w" in err[0]
  assert not (tmp_path / "run").exists()


def test_run_guarded_exit_statuses(capsys):
  assert launcher.run_guarded(lambda: {"a": 1}) == 0
  assert json.loads(capsys.readouterr().out) == {"a": 1}

  def interrupted():
    raise Interrupted("stopped after 3 steps (stop_after_steps)")
  assert launcher.run_guarded(interrupted) == 3
  assert "relaunch the same command to resume" in capsys.readouterr().err

  def bad():
    raise ValueError("config.data.path: not found;\n  tried /a\n  tried /b")
  assert launcher.run_guarded(bad) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["error: config.data.path: not found; tried /a tried /b"]

  def crash():
    raise RuntimeError("a bug")
  with pytest.raises(RuntimeError, match="a bug"):  # bugs keep their traceback
    launcher.run_guarded(crash)


def test_unknown_override_names_the_nearest_field():
  argv = ["main", "--config=configs/darts_ptb_search.py:cpu", "--config.search.lamda_w=0.1"]
  message = launcher.unknown_field_message(argv)
  assert message.startswith("config.search.lamda_w: no such field")
  assert "config.search.lambda_w" in message
  assert launcher.unknown_field_message(argv[:2] + ["--config.search.lambda_w=0.1"]) is None


def test_int_list_flags(capsys):
  assert launcher.int_list("seeds", ["0", "3"]) == [0, 3]
  with pytest.raises(SystemExit) as stop:
    launcher.int_list("train_seeds", ["1", "x"])
  assert stop.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: --train_seeds: expected comma-separated")
