"""The tree-PyramidNet search end to end: the `launch.main` CLI on a tiny depth."""
import json
import os
import subprocess
import sys

from bayesnas_jax.spaces import tree_pyramid as tp
from tests.spaces.tree_pyramid_support import config as _config
from tests.tests_support import ROOT, make_image_folder


def test_tree_search_cli_end_to_end_on_a_tiny_depth(tmp_path):
  data = make_image_folder(tmp_path / "images")
  workdir = tmp_path / "run"
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  result = subprocess.run(
      [sys.executable, "-m", "launch.main", "--config=configs/tree_pyramidnet_cifar10_search.py:tiny",
       f"--workdir={workdir}", f"--config.data.path={data}", "--config.input.image_size=0",
       "--config.input.batch_size=4", "--config.input.train_examples=0",
       "--config.input.test_examples=0", "--config.search.curvature_batches=2",
       "--config.space.alpha=6", "--config.space.num_classes=3"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  genotype = json.loads((workdir / "genotype.json").read_text())
  assert [(c["stage"], c["block"]) for c in genotype["cells"]] == [(1, 1), (2, 1), (3, 1)]
  assert all(set(c["paths"]) <= set(range(1, 10)) for c in genotype["cells"])
  for stage in (1, 2, 3):
    assert (workdir / "plots" / f"stage{stage}_paths.png").exists()
  summary = json.loads((workdir / "summary.json").read_text())
  config = _config(alpha=6.0)
  assert summary["derived_params"] == tp.parameter_count(genotype, config)
