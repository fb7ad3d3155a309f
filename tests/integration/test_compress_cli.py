"""Structured compression end to end: the LeNet CLIs (`launch.main`,
`launch.compress_compare`) on tiny IDX files — the summary and files, one-line
errors, the baselines pruned to the same architecture, a restored baseline that
continues exactly, and a non-finite loss."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from bayesnas_jax import launcher
from configs import compress_lenet5_mnist
from tests.tests_support import ROOT, write_tiny_idx


def _cli(args):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", "launch.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600, check=False)


def test_lenet5_cli_end_to_end_on_tiny_idx(tmp_path):
  write_tiny_idx(str(tmp_path))
  workdir = tmp_path / "run"
  result = _cli(["--config=configs/compress_lenet5_mnist.py", f"--workdir={workdir}",
                 f"--config.data.path={tmp_path}", "--config.data.source=idx",
                 "--config.input.batch_size=16", "--config.train.baseline_epochs=1",
                 "--config.compress.rounds=2", "--config.compress.epochs_per_round=1",
                 "--config.compress.curvature_batches=2", "--config.compress.finetune_epochs=1",
                 "--config.train.schedule=cosine", "--config.compress.lambda_ramp=linear",
                 "--config.compress.distill=0.5",
                 # The pipeline, not the rule: a λ that keeps most groups
                 # (0: the convolutions' own λ^l falls back to it).
                 "--config.compress.lambda_=1e-9", "--config.compress.layer_lambda.Conv_0=0",
                 "--config.compress.layer_lambda.Conv_1=0"])
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["architecture_before"] == "20-50-800-500"
  assert summary["params_before"] == 431080 and summary["flops_before"] == 2293000
  assert summary["test_error_after"] == summary["test_error_masked"]
  # The linear ramp: round t of T_max = 2 penalises with λ·t/2.
  assert [r["lambda_factor"] for r in summary["rounds"]] == [0.5, 1.0]
  # Multiply-adds of the compressed LeNet-5 a-b-c-d, counted here: conv 5×5 of
  # 1 → a channels on 24×24 outputs, a → b on 8×8, dense c → d and d → 10.
  a, b, c, d = (int(x) for x in summary["architecture_after"].split("-"))
  assert summary["flops_after"] == 576 * 25 * a + 64 * 25 * a * b + c * d + 10 * d
  assert summary["params_after"] <= summary["params_before"]
  for name in ("layers.md", "sparsity.png", "compressed_model.json"):
    assert (workdir / name).exists()
  assert (workdir / "compressed").is_dir()


@pytest.mark.parametrize("field, value, words", [
    ("compress.groups.Dense_0", "diagonal",
     "config.compress.groups.Dense_0: 'diagonal' is not a dense group"),
    ("compress.groups.Conv_0", "row", "config.compress.groups.Conv_0: 'row' is not a conv"),
    ("train.schedule", "linear", "config.train.schedule: expected one of"),
    ("compress.lambda_ramp", "cosine", "config.compress.lambda_ramp: expected one of"),
    ("compress.distill", 1.5, "config.compress.distill: expected a weight in [0, 1)"),
    ("compress.baseline_checkpoint", "/nonexistent/baseline",
     "config.compress.baseline_checkpoint: no checkpoint directory /nonexistent/baseline"),
])
def test_bad_group_names_are_one_line(field, value, words, tmp_path, capsys):
  """Through the launcher in-process (the CLI's path after flag parsing)."""
  config = compress_lenet5_mnist.get_config()
  *parents, leaf = field.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value
  assert launcher.main(config, str(tmp_path / "w")) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and words in lines[0], lines
  assert not (tmp_path / "w").exists()


def test_compress_compare_prunes_the_baselines_to_the_same_architecture(tmp_path):
  write_tiny_idx(str(tmp_path))
  workdir = tmp_path / "compare"
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  result = subprocess.run(
      [sys.executable, "-m", "launch.compress_compare",
       "--config=configs/compress_lenet300_mnist.py", f"--workdir={workdir}",
       f"--config.data.path={tmp_path}", "--config.data.source=idx",
       "--config.input.batch_size=16", "--config.train.baseline_epochs=1",
       "--config.compress.rounds=1", "--config.compress.epochs_per_round=1",
       "--config.compress.curvature_batches=2", "--config.compress.finetune_epochs=1",
       "--config.compress.lambda_=1e-8"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads((workdir / "compare.json").read_text())
  assert set(rows) == {"bayes", "magnitude", "group_lasso"}
  for method in ("magnitude", "group_lasso"):
    assert rows[method]["architecture_after"] == rows["bayes"]["architecture_after"]
    assert rows[method]["flops_after"] == rows["bayes"]["flops_after"]
  assert "| magnitude |" in result.stdout and "| bayes |" in result.stdout
  # Both baselines restored the Bayesian run's dense baseline instead of training one.
  assert result.stderr.count(f"restored from {workdir / 'bayes' / 'baseline'}") == 2
  assert "baseline: epoch" not in result.stderr.split("== magnitude")[1]


def test_a_restored_baseline_continues_exactly(tmp_path):
  """A run from another run's saved dense baseline (weights, momentum, epoch count)
  ends with the same compressed weights as the run that trained it."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  write_tiny_idx(str(tmp_path))
  common = ["--config=configs/compress_lenet300_mnist.py", f"--config.data.path={tmp_path}",
            "--config.data.source=idx", "--config.input.batch_size=16",
            "--config.train.baseline_epochs=2", "--config.compress.rounds=2",
            "--config.compress.epochs_per_round=1", "--config.compress.curvature_batches=2",
            "--config.compress.finetune_epochs=1", "--config.compress.lambda_=1e-8"]
  first = _cli(common + [f"--workdir={tmp_path / 'a'}"])
  assert first.returncode == 0, first.stderr[-3000:]
  # baseline_epochs is the checkpoint's (2), whatever the config says.
  second = _cli(common + [f"--workdir={tmp_path / 'b'}", "--config.train.baseline_epochs=5",
                          f"--config.compress.baseline_checkpoint={tmp_path / 'a' / 'baseline'}"])
  assert second.returncode == 0, second.stderr[-3000:]
  assert "baseline: epoch" not in second.stderr
  a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in "ab")
  for key in ("test_error_before", "architecture_after", "test_error_after", "rounds"):
    assert a[key] == b[key], key
  assert a["baseline_checkpoint"] is None
  assert b["baseline_checkpoint"] == str(tmp_path / "a" / "baseline")
  weights = [ocp.StandardCheckpointer().restore(str(tmp_path / d / "compressed")) for d in "ab"]
  leaves = [jax.tree_util.tree_leaves(w) for w in weights]
  assert len(leaves[0]) == len(leaves[1]) > 0
  for x, y in zip(*leaves):
    np.testing.assert_array_equal(x, y)


def test_non_finite_loss_stops_compression_and_writes_nothing(tmp_path):
  write_tiny_idx(str(tmp_path))
  workdir = tmp_path / "run"
  result = _cli(["--config=configs/compress_lenet300_mnist.py", f"--workdir={workdir}",
                 f"--config.data.path={tmp_path}", "--config.data.source=idx",
                 "--config.input.batch_size=16", "--config.train.baseline_epochs=1",
                 "--config.train.learning_rate=1e9"])
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: ") and (
      "the loss turned non-finite" in lines[0]), result.stderr[-3000:]
  assert not (workdir / "summary.json").exists()
