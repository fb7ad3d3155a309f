"""A real SIGKILL: the recurrent search killed by the operating system after it
has written checkpoints, relaunched with the same command, ends with the same
summary and files as a run never killed (timings aside)."""
import json
import os
import signal
import subprocess
import sys
import time

from tests.tests_support import ROOT, write_corpus

ARGS = ["--config=configs/darts_ptb_search.py:cpu", "--config.space.size=8",
        "--config.space.num_nodes=2", "--config.input.batch_size=16", "--config.input.bptt=5",
        "--config.input.random_length=False", "--config.search.rounds=2",
        "--config.search.steps_per_round=40", "--config.search.curvature_windows=2",
        "--config.search.horizon=3", "--config.train.steps=60",
        "--config.input.valid_tokens=0", "--config.checkpoint_every_steps=5",
        "--config.log_every_steps=20"]


def _command(corpus, workdir):
  return [sys.executable, "-m", "launch.main", *ARGS, f"--workdir={workdir}",
          f"--config.data.path={corpus}"]


def _env():
  return {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}


def _saves(workdir):
  """The checkpoint steps on disk now (the checkpointer keeps the last two)."""
  folder = workdir / "checkpoints"
  try:
    return {p.name for p in folder.iterdir() if p.name.isdigit()}
  except FileNotFoundError:
    return set()


def _without_timings(summary):
  out = {k: v for k, v in summary.items() if k != "seconds"}
  out["rounds"] = [{k: v for k, v in r.items() if not k.endswith("seconds")}
                   for r in out["rounds"]]
  return out


def test_sigkilled_search_resumes_to_the_same_result(tmp_path):
  write_corpus(tmp_path, train_lines=400)
  whole = subprocess.run(_command(tmp_path, tmp_path / "whole"), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600, check=False)
  assert whole.returncode == 0, whole.stderr[-3000:]
  killed = tmp_path / "killed"
  process = subprocess.Popen(_command(tmp_path, killed), cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  seen = set()
  while len(seen) < 3 and process.poll() is None and time.time() < deadline:
    seen |= _saves(killed)   # three saves seen, whatever the checkpointer deleted since
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  assert process.wait(timeout=60) == -signal.SIGKILL   # killed mid-run, not finished
  assert not (killed / "summary.json").exists()
  again = subprocess.run(_command(tmp_path, killed), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600, check=False)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resuming from" in again.stderr
  first = json.loads((tmp_path / "whole" / "summary.json").read_text())
  second = json.loads((killed / "summary.json").read_text())
  assert _without_timings(second) == _without_timings(first)
  for name in ("genotype.json", "architecture.json"):
    assert (killed / name).read_text() == (tmp_path / "whole" / name).read_text()
