"""End-to-end search: the CLI on a tiny config, resume after interruption, the
same seed giving the same result, and one-line errors for bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import quickstart
from bayesnas_jax import launcher
from bayesnas_jax.search import run
from tests.tests_support import ROOT, make_image_folder
TINY_OPS = ("skip_connect", "sep_conv_3x3", "max_pool_3x3", "avg_pool_3x3")
OVERRIDES = {
    "input.batch_size": 8, "space.channels": 4, "space.layers": 3,
    "space.stem_multiplier": 1, "search.rounds": 2, "search.curvature_batches": 2,
    "retrain.epochs": 1, "log_every_steps": 2, "checkpoint_every_steps": 3,
    "tensorboard": True, "search.warmup_fraction": 0.25,
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  """A 3-class image folder of 8×8 PNGs: 48 train and 9 test images."""
  return make_image_folder(tmp_path_factory.mktemp("images"))


def tiny_config(data_path, **extra):
  config = quickstart.get_config()
  config.data.path = data_path
  config.space.ops = TINY_OPS
  for field, value in {**OVERRIDES, **extra}.items():
    node = config
    *parents, leaf = field.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def _read(workdir, name):
  with open(os.path.join(workdir, name), encoding="utf-8") as f:
    return json.load(f)


def _cli(args, cwd=ROOT):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", "launch.main", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("full"))
  summary = run.run_search(tiny_config(tiny_data), workdir, log=lambda _: None)
  return workdir, summary


def test_outputs_of_a_search(uninterrupted):
  workdir, summary = uninterrupted
  genotype = _read(workdir, "genotype.json")
  for kind in ("normal", "reduce"):
    for op, source, target in genotype[kind]:
      assert op in TINY_OPS and 0 <= source < target <= 5
    per_node = [sum(1 for e in genotype[kind] if e[2] == node) for node in range(2, 6)]
    assert max(per_node) <= 2
    assert set(genotype[f"{kind}_concat"]) <= {2, 3, 4, 5}
  arch = _read(workdir, "architecture.json")
  assert [r["round"] for r in arch["rounds"]] == [0, 1]
  record = arch["rounds"][-1]["scalars"][0]
  for field in ("name", "w", "H", "C", "omega", "s", "gamma", "kept"):
    assert field in record
  # The pruning rule holds in what was written: kept groups have γ above 1/(2πe).
  for scalar in arch["rounds"][0]["scalars"]:
    if scalar["kept"]:
      assert scalar["gamma"] > arch["prune_threshold"]
  for name in ("normal_cell.png", "normal_cell.svg", "reduce_gamma.png"):
    assert os.path.getsize(os.path.join(workdir, "plots", name)) > 1000
  assert summary["rounds"] == 2 and summary["search_seconds"] > 0
  assert summary["derived_params"] > 0
  assert 0.0 <= summary["retrain_test"]["accuracy"] <= 1.0
  assert summary["retrain_test"]["examples"] == 9
  lines = open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8").read().splitlines()
  phases = {json.loads(line)["phase"] for line in lines}
  assert {"warmup", "train", "curvature", "retrain", "test"} <= phases
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(os.path.join(workdir, "tensorboard")))


def test_resume_after_interruption_is_bit_exact(uninterrupted, tiny_data, tmp_path):
  workdir = str(tmp_path / "resumed")
  with pytest.raises(run.Interrupted):
    run.run_search(tiny_config(tiny_data, stop_after_steps=7), workdir, log=lambda _: None)
  assert not os.path.exists(os.path.join(workdir, "architecture.json"))
  with pytest.raises(run.Interrupted):  # a second interruption, inside round 2
    run.run_search(tiny_config(tiny_data, stop_after_steps=6), workdir, log=lambda _: None)
  run.run_search(tiny_config(tiny_data), workdir, log=lambda _: None)
  reference = uninterrupted[0]
  assert _read(workdir, "architecture.json") == _read(reference, "architecture.json")
  assert _read(workdir, "genotype.json") == _read(reference, "genotype.json")
  assert (_read(workdir, "summary.json")["retrain_test"]
          == _read(reference, "summary.json")["retrain_test"])


def test_same_seed_same_architecture_and_other_seed_differs(uninterrupted, tiny_data,
                                                             tmp_path):
  again = str(tmp_path / "again")
  run.run_search(tiny_config(tiny_data), again, log=lambda _: None)
  assert _read(again, "architecture.json") == _read(uninterrupted[0], "architecture.json")
  other = str(tmp_path / "other")
  run.run_search(tiny_config(tiny_data, seed=1), other, log=lambda _: None)
  assert _read(other, "architecture.json") != _read(uninterrupted[0], "architecture.json")


def _cli_args(data_path, workdir, *extra):
  args = [f"--config={ROOT}/configs/quickstart.py", f"--workdir={workdir}",
          f"--config.data.path={data_path}",
          f"--config.space.ops=({','.join(repr(o) for o in TINY_OPS)},)"]
  args += [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  return args + list(extra)


def test_cli_runs_and_prints_summary(tiny_data, tmp_path):
  workdir = tmp_path / "cli"
  result = _cli(_cli_args(tiny_data, workdir, "--config.retrain.epochs=0",
                          "--config.search.rounds=1"))
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads(result.stdout)
  assert summary["rounds"] == 1 and "retrain_test" not in summary
  assert (workdir / "genotype.json").exists()
  assert "round 1: kept" in result.stderr


@pytest.mark.parametrize("field, value, words", [
    ("search.lambda_w", -1.0, "config.search.lambda_w"),
    ("search.dependency", "some", "config.search.dependency"),
    ("space.ops", ("sep_conv_3x3", "zero"), "config.space.ops"),
    ("data.path", "/nonexistent/images", "/nonexistent/images"),
    ("matmul_precision", "fast", "config.matmul_precision"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_data, tmp_path, capsys, field, value,
                                                  words):
  """Through the launcher in-process (the CLI's own path after flag parsing;
  the unknown-field tests below run the CLI itself)."""
  workdir = tmp_path / "bad"
  config = tiny_config(tiny_data, **{"data.source": "image_folder", field: value})
  assert launcher.main(config, str(workdir)) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], lines
  assert not workdir.exists()


@pytest.mark.parametrize("override, words", [
    ("--config.search.lambda_W=1", "config.search.lambda_W: no such field; did you mean "
                                   "config.search.lambda_w"),
    ("--config.serch.rounds=1", "config.serch.rounds: no such field; did you mean "
                                "config.search?"),
])
def test_unknown_config_field_is_one_line_with_the_nearest(tiny_data, tmp_path, override,
                                                           words):
  result = _cli(_cli_args(tiny_data, tmp_path / "w", override))
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {words}"), result.stderr
  assert not (tmp_path / "w").exists()


def test_darts_search_reproduces_the_recorded_result(tmp_path):
  """The DARTS space behind the `SearchSpace` interface gives the search of
  commit 87ccba7 (before the interface): `tests/fixtures/darts_tiny_*.json` were
  written by that commit's `run.run_search` on this config and data, under this
  suite's settings. The images are noise, so the loss stays high and H ≥ 7e-5
  (γ 0.3–3.5): a regime where rounding on another machine moves γ by far less
  than the tolerance."""
  data = make_image_folder(tmp_path / "noise", separable=False)
  workdir = str(tmp_path / "run")
  # The literal method of that commit (SPEC §1–3), whatever the defaults are now.
  legacy = {"space.origin": "input", "search.curvature_source": "recursion",
            "search.rank_by": "gamma", "search.derivation": "pairs",
            "search.zero_curvature": "keep", "search.penalty_budget": 0.0,
            "search.lambda_w_origin": 0.0, "search.retrain_between_rounds": 0}
  run.run_search(tiny_config(data, **{"retrain.epochs": 0, "tensorboard": False, **legacy}),
                 workdir, log=lambda _: None)
  recorded = _read(os.path.join(ROOT, "tests", "fixtures"), "darts_tiny_architecture.json")
  result = _read(workdir, "architecture.json")
  assert _read(workdir, "genotype.json") == _read(os.path.join(ROOT, "tests", "fixtures"),
                                                  "darts_tiny_genotype.json")
  assert {k: v for k, v in result.items() if k in recorded and k != "rounds"} == {
      k: v for k, v in recorded.items() if k != "rounds"}
  # Added since that commit: how the derivation was decided (per node of each
  # cell type; γ ranking over groups that all survived: every node by rank).
  assert result["decided_by_prior"] + result["decided_by_rank"] == 8
  assert [d["decided_by"] for d in result["decisions"]].count("prior") == (
      result["decided_by_prior"])
  assert len(result["rounds"]) == len(recorded["rounds"]) == 2
  for ours, theirs in zip(result["rounds"], recorded["rounds"]):
    assert [s["name"] for s in ours["scalars"]] == [s["name"] for s in theirs["scalars"]]
    assert [s["kept"] for s in ours["scalars"]] == [s["kept"] for s in theirs["scalars"]]
    # Round 1 matches to ~1e-6 across machines. Round 2's curvature follows a
    # second epoch of training: measured on two machines of this project
    # (2026-12-02), w agreed to 5e-5 and H to 5e-3 relative, so the
    # curvature-derived fields of later rounds get 2e-2.
    later = ours["round"] > 0
    for field in ("w", "H", "C", "omega", "s", "gamma"):
      rtol = 2e-2 if later and field != "w" else 1e-3
      np.testing.assert_allclose([s[field] for s in ours["scalars"]],
                                 [s[field] for s in theirs["scalars"]], rtol=rtol,
                                 err_msg=f"round {ours['round']}: {field}")


def test_non_finite_loss_stops_the_search_and_writes_nothing(tiny_data, tmp_path):
  """At a learning rate of 1e9 the loss or gradient turns NaN:
  the search stops with one error naming the phase and step, and writes no
  round record, architecture or summary."""
  from bayesnas_jax.metrics import NonFiniteError  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "nan")
  config = tiny_config(tiny_data, **{"search.learning_rate": 1e9, "retrain.epochs": 0,
                                     "tensorboard": False})
  # Which phase first overflows depends on rounding: any phase of the search.
  with pytest.raises(NonFiniteError, match=r"^(warmup|train round \d/2): the (loss|grad_norm) "
                                           r"turned non-finite .* at step \d+; stopped"):
    run.run_search(config, workdir, log=lambda _: None)
  for name in ("summary.json", "genotype.json", "architecture.json", "rounds"):
    assert not os.path.exists(os.path.join(workdir, name)), name
