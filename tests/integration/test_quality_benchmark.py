"""The quality benchmark (`launch.quality`): searched cells against random cells.

End to end on a tiny NB201 config (two seeds, two random cells, one epoch of
the short protocol on a 3-class image folder): the result, resuming, a pool of
random cells shared between benchmarks, averaging over training seeds, scoring
by a benchmark table, and `launch.rederive` on a finished search."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bayesnas_jax.quality import benchmark as quality
from tests.tests_support import ROOT, make_image_folder

TINY = ["--config.input.batch_size=8", "--config.search.warmup_fraction=0.25",
        "--config.search.curvature_batches=2", "--config.quality.batch_size=8",
        "--config.tensorboard=False"]


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
  root = tmp_path_factory.mktemp("quality")
  data = make_image_folder(root / "images")
  workdir = root / "run"
  args = [sys.executable, "-m", "launch.quality",
          f"--config={ROOT}/configs/nb201_cifar10_search.py:tiny", "--seeds=0,1",
          "--random_cells=2", f"--workdir={workdir}", f"--config.data.path={data}", *TINY]
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  first = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900, check=False)
  second = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
  return workdir, first, second


def test_quality_benchmark_end_to_end(benchmark):
  workdir, first, _ = benchmark
  assert first.returncode == 0, first.stderr[-3000:]
  with open(workdir / "quality.json", encoding="utf-8") as f:
    result = json.load(f)
  assert result["space"] == "nb201" and result["seeds"] == [0, 1]
  randoms = [r["test_accuracy"] for r in result["random"]]
  assert len(randoms) == 2 and all(0.0 <= a <= 1.0 for a in randoms)
  for searched in result["searched"]:
    assert searched["percentile"] == quality.percentile(searched["test_accuracy"], randoms)
    with open(searched["genotype_file"], encoding="utf-8") as f:
      assert json.load(f)["cell"] == searched["architecture"]["cell"]
    assert searched["search_seconds"] > 0
    assert os.path.exists(os.path.join(workdir, "train", f"searched_seed{searched['seed']}",
                                       "summary.json"))
  assert result["mean_percentile"] == pytest.approx(
      np.mean([s["percentile"] for s in result["searched"]]))
  assert sorted(row["edge"] for row in result["stability"]) == sorted(
      ["0->1", "0->2", "1->2", "0->3", "1->3", "2->3"])
  # Agreement per edge, counted here from the two seeds' cells.
  cells = [{(j, k): op for op, j, k in s["architecture"]["cell"]} for s in result["searched"]]
  for row in result["stability"]:
    j, k = (int(x) for x in row["edge"].split("->"))
    assert row["agree"] == (2 if cells[0][(j, k)] == cells[1][(j, k)] else 1)
  assert os.path.getsize(workdir / "quality.png") > 1000
  printed = json.loads(first.stdout)
  assert printed["mean_percentile"] == result["mean_percentile"]


def test_quality_benchmark_resumes_without_redoing_work(benchmark):
  workdir, first, second = benchmark
  assert second.returncode == 0, second.stderr[-3000:]
  assert json.loads(second.stdout) == json.loads(first.stdout)
  assert "training random_r1000_000" in second.stderr  # visited, from its summary.json
  assert "round 1: kept" not in second.stderr  # no search ran again


def test_quality_benchmarks_share_random_cells(benchmark, tmp_path):
  """A second benchmark (here: the same search, copied) with --random_workdir
  pointing at the first reuses its random cells: nothing random is trained
  again and the percentiles agree; a protocol change is refused."""
  workdir, first, _ = benchmark
  assert first.returncode == 0, first.stderr[-3000:]
  other = tmp_path / "other"
  shutil.copytree(workdir / "search_seed1", other / "search_seed1")
  args = [sys.executable, "-m", "launch.quality",
          f"--config={ROOT}/configs/nb201_cifar10_search.py:tiny", "--seeds=1",
          "--random_cells=2", f"--workdir={other}", f"--random_workdir={workdir}",
          f"--config.data.path={workdir.parent / 'images'}", *TINY]
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  shared = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
  assert shared.returncode == 0, shared.stderr[-3000:]
  assert not (other / "random").exists()
  assert sorted(os.listdir(other / "train")) == ["searched_seed1"]
  with open(workdir / "quality.json", encoding="utf-8") as f:
    before = json.load(f)
  with open(other / "quality.json", encoding="utf-8") as f:
    after = json.load(f)
  assert [r["test_accuracy"] for r in after["random"]] == [
      r["test_accuracy"] for r in before["random"]]
  assert after["searched"][0]["percentile"] == before["searched"][1]["percentile"]
  changed = subprocess.run(args + ["--config.quality.epochs=2"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=900, check=False)
  assert changed.returncode != 0
  assert "--random_workdir" in changed.stderr and "another protocol" in changed.stderr


def test_rederive_reproduces_and_reranks_a_finished_search(benchmark, tmp_path):
  """launch.rederive with the search's own options gives its genotype back;
  with rank_by=curvature each live edge takes its kept op of largest H, read
  here straight from architecture.json."""
  workdir, first, _ = benchmark
  assert first.returncode == 0, first.stderr[-3000:]
  source = workdir / "search_seed0"
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}

  def rederive(target, *overrides):
    result = subprocess.run(
        [sys.executable, "-m", "launch.rederive",
         f"--config={ROOT}/configs/nb201_cifar10_search.py:tiny", f"--from_dir={source}",
         f"--workdir={target}", *overrides], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(target / "genotype.json", encoding="utf-8") as f:
      return json.load(f)

  with open(source / "genotype.json", encoding="utf-8") as f:
    assert rederive(tmp_path / "same") == json.load(f)
  by_curvature = rederive(tmp_path / "curv", "--config.search.rank_by=curvature")
  with open(source / "architecture.json", encoding="utf-8") as f:
    scalars = json.load(f)["rounds"][-1]["scalars"]
  for op, j, k in by_curvature["cell"]:
    edge = [s for s in scalars if (s["from"], s["to"]) == (j, k)]
    origin = [s for s in edge if s["op"] == "origin"][0]
    kept = [s for s in edge if s["op"] != "origin" and s["kept"]]
    if not origin["kept"] or not kept:
      assert op == "none"
    else:
      assert op == max(kept, key=lambda s: s["H"])["op"]
  bad = subprocess.run(
      [sys.executable, "-m", "launch.rederive",
       f"--config={ROOT}/configs/nb201_cifar10_search.py:tiny", f"--from_dir={tmp_path}",
       f"--workdir={tmp_path / 'x'}"], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=600, check=False)
  assert bad.returncode == 2 and "architecture.json" in bad.stderr


def test_quality_benchmark_rejects_bad_flags(tmp_path):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  result = subprocess.run(
      [sys.executable, "-m", "launch.quality",
       f"--config={ROOT}/configs/nb201_cifar10_search.py:tiny", "--seeds=0",
       "--random_cells=2", f"--workdir={tmp_path / 'w'}",
       "--config.quality.eval_config=configs.nothing_here"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: config.quality.eval_config")
  assert not (tmp_path / "w").exists()


def test_quality_benchmark_averages_over_training_seeds(benchmark, tmp_path):
  """--train_seeds=0,1 trains each cell again with seed 1 beside the seed-0
  training it already has (`train/<cell>_t1`) and scores it by the mean; a
  repeated seed is refused with a one-line error."""
  workdir, first, _ = benchmark
  assert first.returncode == 0, first.stderr[-3000:]
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  args = [sys.executable, "-m", "launch.quality",
          f"--config={ROOT}/configs/nb201_cifar10_search.py:tiny", "--seeds=1",
          "--random_cells=1", f"--workdir={copy}", "--train_seeds=0,1",
          f"--config.data.path={workdir.parent / 'images'}", *TINY]
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=900, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  with open(copy / "quality.json", encoding="utf-8") as f:
    result = json.load(f)
  assert result["train_seeds"] == [0, 1]
  for cell, name in ((result["searched"][0], "searched_seed1"),
                     (result["random"][0], "random_r1000_000")):
    accuracies = []
    for label in (name, f"{name}_t1"):
      with open(copy / "train" / label / "summary.json", encoding="utf-8") as f:
        accuracies.append(json.load(f)["final_test_accuracy"])
    assert cell["test_accuracies"] == accuracies
    assert cell["test_accuracy"] == pytest.approx(np.mean(accuracies))
  assert result["searched"][0]["percentile"] == quality.percentile(
      result["searched"][0]["test_accuracy"], [result["random"][0]["test_accuracy"]])
  repeated = subprocess.run([a.replace("=0,1", "=0,0") for a in args], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600,
                            check=False)
  assert repeated.returncode != 0
  assert "--train_seeds" in repeated.stderr.strip().splitlines()[-1]


def _synthetic_table(path, drop=None):
  """Every NB201 cell with a made-up accuracy (2 per 3×3 conv, 1 per 1×1 conv,
  0.5 per skip, plus a small index term so that no two cells tie)."""
  import itertools  # pylint: disable=import-outside-toplevel
  ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
  value = {"nor_conv_3x3": 2.0, "nor_conv_1x1": 1.0, "skip_connect": 0.5}
  lines, table = ["arch,cifar10_test_accuracy"], {}
  for i, cell in enumerate(itertools.product(ops, repeat=6)):
    text = "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*cell)
    if text == drop:
      continue
    table[text] = 80.0 + sum(value.get(o, 0.0) for o in cell) + i * 1e-5
    lines.append(f"{text},{table[text]!r}")
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return table


def test_benchmark_table_scores_searched_cells_without_training(benchmark, tmp_path):
  workdir, first, _ = benchmark
  assert first.returncode == 0, first.stderr[-3000:]
  lookup = tmp_path / "lookup"
  for seed in (0, 1):
    shutil.copytree(workdir / f"search_seed{seed}", lookup / f"search_seed{seed}")
  table = _synthetic_table(tmp_path / "table.csv")
  args = [sys.executable, "-m", "launch.quality",
          f"--config={ROOT}/configs/nb201_cifar10_search.py:tiny", "--seeds=0,1",
          f"--workdir={lookup}", f"--benchmark_table={tmp_path / 'table.csv'}", *TINY]
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  assert not (lookup / "train").exists() and not (lookup / "random").exists()
  with open(lookup / "quality.json", encoding="utf-8") as f:
    result = json.load(f)
  values = np.array(list(table.values()))
  accuracies = []
  for row in result["searched"]:
    with open(lookup / f"search_seed{row['seed']}" / "nb201_arch.txt", encoding="utf-8") as f:
      cell = f.read().strip()
    assert row["nb201"] == cell and row["table_accuracy"] == table[cell]
    assert row["table_percentile"] == pytest.approx(100 * (np.sum(values < table[cell]) + 0.5)
                                                    / values.size)
    accuracies.append(table[cell])
  assert result["table_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
  assert result["table_accuracy"]["sd"] == pytest.approx(np.std(accuracies, ddof=1))
  assert result["benchmark"]["cells"] == 5 ** 6
  assert os.path.getsize(lookup / "quality.png") > 1000
  # A table without the seed-0 cell: one line naming the cell, no result written.
  with open(lookup / "search_seed0" / "nb201_arch.txt", encoding="utf-8") as f:
    missing = f.read().strip()
  _synthetic_table(tmp_path / "partial.csv", drop=missing)
  os.remove(lookup / "quality.json")
  bad = subprocess.run([a.replace("table.csv", "partial.csv") for a in args], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600, check=False)
  assert bad.returncode == 2
  last = bad.stderr.strip().splitlines()[-1]
  assert missing in last and "is not in the table" in last
  assert not (lookup / "quality.json").exists()
