"""The recurrent space in the registry: `launch.quality`'s benchmark and
`launch.rederive` on a recurrent search (tiny corpus, tiny cell, in process)."""
import json

import numpy as np
import pytest

from bayesnas_jax import spaces
from bayesnas_jax.quality import benchmark
from bayesnas_jax.search.rederive import rederive
from configs import darts_ptb_search
from tests.tests_support import write_corpus


def _tiny(config):
  """Size 8, two nodes, windows of 5 tokens, batch 8, the whole validation text."""
  config.space.size = 8
  config.space.num_nodes = 2
  config.input.batch_size = 8
  config.input.bptt = 5
  config.input.random_length = False
  config.input.valid_tokens = 0
  return config


def _config(corpus):
  config = _tiny(darts_ptb_search.get_config("cpu"))
  config.data.path = str(corpus)
  config.search.steps_per_round = 10
  config.search.rounds = 1
  config.search.curvature_windows = 2
  config.search.horizon = 3
  config.search.within_node = "none"   # nodes keep several pairs: the rank decides
  return config


@pytest.fixture(scope="module")
def quality(tmp_path_factory):
  root = tmp_path_factory.mktemp("rnn_quality")
  corpus = root / "corpus"
  corpus.mkdir()
  write_corpus(corpus)
  config = _config(corpus)
  # The protocol: the :cpu evaluation config, cut to a few steps at this size.
  import configs.darts_ptb_eval as eval_module  # pylint: disable=import-outside-toplevel
  original = eval_module.get_config

  def tiny_eval(arg=None):
    e = _tiny(original(arg))
    e.train.epochs = 1
    e.train.steps_per_epoch = 10
    return e

  eval_module.get_config = tiny_eval
  try:
    result = benchmark.run_quality(config, str(root / "bench"), [0], random_cells=3,
                                   random_seed=7, log=lambda _: None)
    with open(root / "bench" / "quality.json", encoding="utf-8") as f:
      written = json.load(f)
  finally:
    eval_module.get_config = original
  return config, root, result, written


def test_the_registry_builds_the_recurrent_space():
  config = darts_ptb_search.get_config("cpu")
  space = spaces.make(config.space)
  assert space.name == "rnn" and list(space.cells) == ["rnn"]
  rng = np.random.default_rng(0)
  genotype = space.random_architecture(rng)
  masks = space.architecture_masks(genotype, space.init_arch())
  ops = np.asarray(masks["rnn"]["ops"][0])
  assert ops.sum() == config.space.num_nodes                 # one pair per node
  spec = space.cells["rnn"]
  for node in spec.intermediate:                             # each from an earlier node
    assert ops[list(spec.in_edges(node))].sum() == 1
  config.space.ops = ["tanh", "softplus"]
  with pytest.raises(ValueError, match=r"^config\.space\.ops: "):
    spaces.validate(config.space)


def test_quality_benchmark_scores_recurrent_cells_by_perplexity(quality):
  _, root, result, written = quality
  assert result["space"] == "rnn" and written["space"] == "rnn"
  random_ppl = [r["test_perplexity"] for r in written["random"]]
  assert len(random_ppl) == 3 and all(np.isfinite(random_ppl))
  searched = written["searched"][0]
  # The percentile is the share of random cells with a higher perplexity.
  worse = np.mean([p > searched["test_perplexity"] for p in random_ppl]) * 100
  ties = np.mean([p == searched["test_perplexity"] for p in random_ppl]) * 50
  assert searched["percentile"] == pytest.approx(worse + ties)
  # Random cells are drawn from the seed, and each trained once: relaunching
  # with the same seed finds them done (same files, same genotypes).
  space = spaces.make(_config(root).space)
  rng = np.random.default_rng(7)
  for cell in written["random"]:
    assert cell["architecture"] == space.random_architecture(rng)
    assert (root / "bench" / "train" / f"random_r7_{cell['index']:03d}" /
            "summary.json").exists()
  assert (root / "bench" / "quality.png").exists()


def test_rederive_gives_a_recurrent_search_its_genotype_back(quality, tmp_path):
  config, root, _, _ = quality
  source = root / "bench" / "search_seed0"
  summary = rederive(config, str(source), str(tmp_path / "again"))
  with open(source / "genotype.json", encoding="utf-8") as f:
    assert summary["genotype"] == json.load(f)
  with open(tmp_path / "again" / "genotype.json", encoding="utf-8") as f:
    assert json.load(f) == summary["genotype"]
  # Ranked by γ instead of w²H, each node takes its kept pair of largest γ, read
  # here straight from the search's records.
  with open(source / "architecture.json", encoding="utf-8") as f:
    scalars = json.load(f)["rounds"][-1]["scalars"]
  config = config.copy_and_resolve_references()
  config.search.rank_by = "gamma"
  by_gamma = rederive(config, str(source), str(tmp_path / "gamma"))
  several = 0
  for node, (op, source_node) in enumerate(by_gamma["genotype"]["recurrent"], 1):
    kept = [s for s in scalars if s["to"] == node and s["op"] != "origin" and s["kept"]]
    best = max(kept, key=lambda s: s["gamma"])
    assert (op, source_node) == (best["op"], best["from"])
    several += len(kept) > 1
  assert several > 0    # not vacuous: some node had a choice to make
