"""The recurrent-cell search and the training of its cell, end to end: the
`launch.main` CLI on a tiny corpus (configs/darts_ptb_search.py, then
configs/darts_ptb_eval.py on the searched genotype.json)."""
import numpy as np


def test_rnn_search_cli_end_to_end_on_a_tiny_corpus(tmp_path):
  import json  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  words = [f"w{i}" for i in range(30)]
  for name, lines in (("train.txt", 120), ("valid.txt", 20), ("test.txt", 20)):
    with open(tmp_path / name, "w", encoding="utf-8") as f:
      for _ in range(lines):  # a word is mostly followed by the next one
        start = int(rng.integers(30))
        f.write(" ".join(words[(start + i) % 30] for i in range(8)) + "\n")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "-m", "launch.main", "--config=configs/darts_ptb_search.py:cpu",
       f"--workdir={workdir}", f"--config.data.path={tmp_path}", "--config.space.size=8",
       "--config.space.num_nodes=2", "--config.input.batch_size=16", "--config.input.bptt=5",
       "--config.input.random_length=False", "--config.search.steps_per_round=20",
       "--config.search.rounds=2",
       "--config.search.curvature_windows=2", "--config.search.horizon=3",
       "--config.train.steps=300", "--config.input.valid_tokens=0",
       "--config.train.dropout_x=0.1", "--config.train.dropout_output=0.1"],
      cwd=root, env={**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"},
      capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  genotype = json.loads((workdir / "genotype.json").read_text())
  assert [source < node for node, (_, source) in zip((1, 2), genotype["recurrent"])] == [True] * 2
  assert genotype["concat"] == [1, 2]
  assert (workdir / "genotype.txt").read_text().startswith("Genotype(recurrent=[")
  # The default tests a node's kept pairs given one another (search.within_node): on
  # this tiny model every pair's evidence is far below λ_w = 0.17, so each node keeps
  # one, and the search ends after that update (search.stop_when_decided).
  assert [d["survivors"] for d in summary["decisions"]] == [1, 1]
  assert len(summary["rounds"]) == 1 and summary["rounds"][0]["kept_ops"] == 2
  assert summary["decided_by_prior"] + summary["decided_by_rank"] == 2
  # 31 words (with <eos>): an untrained model is near uniform; the trained cell
  # must have learnt some of the text's order.
  assert 20 < summary["valid_perplexity_initial"] < 45
  assert summary["valid_perplexity"] < 0.5 * summary["valid_perplexity_initial"]
  for name in ("architecture.json", "scalars.png"):
    assert (workdir / name).exists()
  # The evaluation config trains the searched cell from its genotype.json.
  evaldir = tmp_path / "eval"
  result = subprocess.run(
      [sys.executable, "-m", "launch.main", "--config=configs/darts_ptb_eval.py:cpu",
       f"--workdir={evaldir}", f"--config.data.path={tmp_path}", "--config.space.size=8",
       f"--config.train.genotype={workdir / 'genotype.json'}", "--config.input.batch_size=16",
       "--config.input.bptt=5", "--config.input.random_length=False",
       "--config.input.valid_tokens=0", "--config.train.steps_per_epoch=100",
       "--config.train.epochs=20", "--config.train.nonmono=3", "--config.train.learning_rate=5",
       "--config.train.dropout_x=0.1", "--config.train.dropout_output=0.1"],
      cwd=root, env={**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"},
      capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  trained = json.loads((evaldir / "summary.json").read_text())
  assert trained["genotype"] == genotype and len(trained["valid_perplexity_by_epoch"]) == 20
  assert trained["valid_perplexity"] < 0.7 * summary["valid_perplexity_initial"]
  assert trained["test_perplexity"] < 0.7 * summary["valid_perplexity_initial"]
  bad = subprocess.run(
      [sys.executable, "-m", "launch.main", "--config=configs/darts_ptb_eval.py:cpu",
       f"--workdir={tmp_path / 'bad'}", f"--config.data.path={tmp_path}",
       f"--config.train.genotype={tmp_path / 'missing.json'}"],
      cwd=root, env={**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"},
      capture_output=True, text=True, timeout=600, check=False)
  lines = bad.stderr.strip().splitlines()
  assert bad.returncode == 2 and len(lines) == 1 and "config.train.genotype" in lines[0]
