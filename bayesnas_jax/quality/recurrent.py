"""The quality benchmark of the recurrent space (`launch.quality` with a PTB search config).

As for the image spaces (`quality.benchmark`): one search per seed
(`DIR/search_seed<S>`, the search config without its derived cell's training), R
genotypes drawn uniformly from the space (`space.random_architecture`, each node one
predecessor and one op, seeded), every searched and random cell trained from scratch
with one protocol, and each searched cell's percentile among the random ones. The
protocol is the evaluation config named by `config.quality.eval_config` at the preset
`config.quality.preset`, with the search's data section, training seed t. A cell is
scored by its test perplexity (mean over the training seeds); its percentile is the
share of random cells with a higher one (ties half), in percent.
"""
from __future__ import annotations

import datetime
import importlib
import json
import os

import jax
import numpy as np

from bayesnas_jax import files, spaces
from bayesnas_jax.quality.benchmark import (check_random_pool, draw_random_cells, percentile,
                                            plot_searched_vs_random, stability)


def protocol_config(config, genotype_path, seed):
  """The evaluation config of one cell's training (module docstring)."""
  quality = config.get("quality")
  if quality is None or not quality.get("eval_config"):
    raise ValueError("config.quality: this search config has no `quality` section (the "
                     "training protocol); see configs/darts_ptb_search.py")
  try:
    module = importlib.import_module(quality.eval_config)
  except ImportError:
    raise ValueError(f"config.quality.eval_config: expected an importable config module "
                     f"such as 'configs.darts_ptb_eval', got {quality.eval_config!r}"
                     ) from None
  eval_config = module.get_config(quality.get("preset", "") or None)
  eval_config.train.genotype = genotype_path
  eval_config.seed = seed
  eval_config.data = config.data.copy_and_resolve_references()
  return eval_config


def _edges(genotype):
  """The genotype as {kind: [[op, from, to], ...]} (what `stability` reads)."""
  return {"recurrent": [[op, int(source), node]
                        for node, (op, source) in enumerate(genotype["recurrent"], 1)]}


def _train(config, genotype_path, seed, workdir, log):
  from bayesnas_jax.lm import train  # pylint: disable=import-outside-toplevel
  summary_path = os.path.join(workdir, "summary.json")
  if not os.path.exists(summary_path):
    train.train_cell(protocol_config(config, genotype_path, seed), workdir, log=log)
  with open(summary_path, encoding="utf-8") as f:
    return json.load(f)


def run_quality(config, workdir, seeds, random_cells, random_seed, log, random_workdir=None,
                train_seeds=(0,)):
  """Runs the benchmark (module docstring); returns and writes quality.json and
  quality.png. Relaunching skips every search and training that has finished."""
  from bayesnas_jax.lm import search as lm_search  # pylint: disable=import-outside-toplevel
  lm_search.validate(config)
  space = spaces.make(config.space)
  # The protocol as data; a missing or bad one fails here, before any work.
  protocol = json.loads(json.dumps(protocol_config(config, "", 0).to_dict(), default=str))
  os.makedirs(workdir, exist_ok=True)
  searched = []
  for seed in seeds:
    search_dir = os.path.join(workdir, f"search_seed{seed}")
    summary_path = os.path.join(search_dir, "summary.json")
    if not os.path.exists(summary_path):
      log(f"search, seed {seed} → {search_dir}")
      search_config = config.copy_and_resolve_references()
      search_config.seed = seed
      search_config.train.steps = 0
      lm_search.run(search_config, search_dir, log=log)
    with open(summary_path, encoding="utf-8") as f:
      summary = json.load(f)
    path = os.path.join(search_dir, "genotype.json")
    searched.append({"seed": seed, "genotype_file": path,
                     "architecture": space.load_architecture(path),
                     "genotype_literal": summary["genotype_literal"],
                     "decided_by_prior": summary["decided_by_prior"],
                     "decided_by_rank": summary["decided_by_rank"],
                     "search_seconds": summary["seconds"]})
  pool = random_workdir or workdir
  check_random_pool(protocol, pool)
  randoms = draw_random_cells(space, pool, random_seed, random_cells)
  cells = [(f"searched_seed{s['seed']}", s, workdir) for s in searched]
  cells += [(f"random_r{random_seed}_{r['index']:03d}", r, pool) for r in randoms]
  runs = [(cell, t) for cell in cells for t in train_seeds]
  for n, ((name, cell, base), t) in enumerate(runs):
    label = name if t == 0 else f"{name}_t{t}"
    log(f"[{n + 1}/{len(runs)}] training {label}")
    summary = _train(config, cell["genotype_file"], t, os.path.join(base, "train", label),
                     lambda _: None)
    cell.setdefault("test_perplexities", []).append(summary["test_perplexity"])
    cell.setdefault("valid_perplexities", []).append(summary["valid_perplexity"])
    log(f"  test perplexity {summary['test_perplexity']:.1f}")
  for _, cell, _ in cells:
    cell["test_perplexity"] = float(np.mean(cell["test_perplexities"]))
  random_ppl = [r["test_perplexity"] for r in randoms]
  for s in searched:
    s["percentile"] = percentile(-s["test_perplexity"], [-p for p in random_ppl])
  ppl = [s["test_perplexity"] for s in searched]
  device = jax.devices()[0]
  result = {
      "space": space.name, "date": datetime.date.today().isoformat(),
      "device": f"{device.platform}:{device.device_kind}",
      "seeds": list(seeds), "random_seed": random_seed, "train_seeds": list(train_seeds),
      "random_workdir": os.path.abspath(pool),
      "searched_test_perplexity": {"mean": float(np.mean(ppl)),
                                   "sd": float(np.std(ppl, ddof=1)) if len(ppl) > 1 else 0.0},
      "random_test_perplexity": {"mean": float(np.mean(random_ppl)),
                                 "sd": (float(np.std(random_ppl, ddof=1))
                                        if len(random_ppl) > 1 else 0.0),
                                 "min": float(np.min(random_ppl))},
      "mean_percentile": float(np.mean([s["percentile"] for s in searched])),
      "decided_by_rank": int(sum(s["decided_by_rank"] for s in searched)),
      "searched": searched, "random": randoms,
      "stability": stability([_edges(s["architecture"]) for s in searched]),
      "protocol": protocol,
  }
  files.write_json(os.path.join(workdir, "quality.json"), result)
  plot_searched_vs_random(result, os.path.join(workdir, "quality"), value="test_perplexity",
                          xlabel="test perplexity (lower is better)")
  log(f"searched {result['searched_test_perplexity']['mean']:.1f} "
      f"(sd {result['searched_test_perplexity']['sd']:.1f}), random "
      f"{result['random_test_perplexity']['mean']:.1f} "
      f"(sd {result['random_test_perplexity']['sd']:.1f}); mean percentile "
      f"{result['mean_percentile']:.0f}")
  return {k: result[k] for k in ("space", "searched_test_perplexity",
                                 "random_test_perplexity", "mean_percentile",
                                 "decided_by_rank")} | {
      "searched": [{k: s[k] for k in ("seed", "genotype_literal", "test_perplexity",
                                      "percentile", "search_seconds")} for s in searched]}

