"""The quality benchmark: searched cells against random cells of the same space.

A searched cell is worth what it scores against cells chosen without search.
For each seed the search of `config` runs to its derived architecture; R
architectures are drawn uniformly from the same space (`space.random_architecture`,
seeded); every one of them is trained and tested with the same short protocol,
`config.quality` applied to the evaluation config it names. Reported per searched
cell: test accuracy and its percentile among the random cells (the share of random
cells it beats, ties counting half); the mean percentile; per edge, how many
seeds pick the most common choice (stability); search seconds per seed.

Works for any space whose architectures list edges as `{kind: [[op, from, to],
...]}` (DARTS genotypes and NB201 cells do); every run is resumable. The recurrent
space has its own protocol and score (test perplexity, `quality.recurrent`), which
`run_quality` hands it to.
"""
from __future__ import annotations

import collections
import datetime
import importlib
import json
import os

import jax
import numpy as np

from bayesnas_jax import files, plots, spaces
from bayesnas_jax.quality import table as benchmark_table_lib
from bayesnas_jax.search import run

PROTOCOL_FIELDS = {
    "epochs": "train.epochs", "learning_rate": "train.learning_rate",
    "batch_size": "input.batch_size", "train_examples": "input.train_examples",
    "test_examples": "input.test_examples", "resize": "input.resize",
    "channels": "model.channels", "image_size": "model.image_size",
    "drop_path_prob": "train.drop_path_prob", "cutout_length": "input.cutout_length",
}


def _set(config, path, value):
  node = config
  *parents, leaf = path.split(".")
  for part in parents:
    node = node[part]
  node[leaf] = value


def protocol_config(config, genotype_path, seed):
  """The evaluation config of the short protocol for one cell: the module named
  by `config.quality.eval_config`, with the fields of `config.quality` set, the
  search's data section, and `config.quality.model` fields copied over."""
  quality = config.quality
  try:
    module = importlib.import_module(quality.eval_config)
  except ImportError:
    raise ValueError(f"config.quality.eval_config: expected an importable config module "
                     f"such as 'configs.nb201_cifar10_eval', got {quality.eval_config!r}"
                     ) from None
  eval_config = module.get_config()
  eval_config.genotype = genotype_path
  eval_config.seed = seed
  eval_config.data = config.data.copy_and_resolve_references()
  eval_config.tensorboard = False
  eval_config.log_every_steps = 10 ** 6
  eval_config.train.eval_every_epochs = 10 ** 6  # only after the last epoch
  for field, path in PROTOCOL_FIELDS.items():
    if quality.get(field, None) is not None:
      _set(eval_config, path, quality[field])
  for field, value in quality.get("model", {}).items():
    eval_config.model[field] = value
  return eval_config


def percentile(value, population):
  """Share of `population` below `value` (ties count half), in percent."""
  population = np.asarray(population, np.float64)
  if population.size == 0:
    return float("nan")
  below = np.sum(population < value) + 0.5 * np.sum(population == value)
  return float(100.0 * below / population.size)


def edge_choices(architecture):
  """{(kind, from, to): choice} of an architecture {kind: [[op, from, to], ...]};
  several ops on one edge are joined with '+'."""
  choices = collections.defaultdict(list)
  for kind, edges in architecture.items():
    if not isinstance(edges, list) or not all(
        isinstance(e, (list, tuple)) and len(e) == 3 for e in edges):
      continue
    for op, source, target in edges:
      choices[(kind, int(source), int(target))].append(str(op))
  return {slot: "+".join(sorted(ops)) for slot, ops in choices.items()}


def stability(architectures):
  """Per edge (kind, from→to): the most common choice over the seeds (an edge a
  seed does not use counts as "none") and how many seeds made it."""
  per_seed = [edge_choices(a) for a in architectures]
  slots = sorted({slot for choices in per_seed for slot in choices})
  table = []
  for slot in slots:
    counts = collections.Counter(choices.get(slot, "none") for choices in per_seed)
    choice, agree = counts.most_common(1)[0]
    table.append({"kind": slot[0], "edge": f"{slot[1]}->{slot[2]}", "choice": choice,
                  "agree": agree, "seeds": len(per_seed), "choices": dict(counts)})
  return table


def _train_cell(config, genotype_path, seed, workdir, log):
  from bayesnas_jax.evaluation import train  # pylint: disable=import-outside-toplevel
  summary_path = os.path.join(workdir, "summary.json")
  if os.path.exists(summary_path):
    with open(summary_path, encoding="utf-8") as f:
      return json.load(f)
  eval_config = protocol_config(config, genotype_path, seed)
  train.validate(eval_config)
  return train.train_and_evaluate(eval_config, workdir, log=lambda _: None)


def plot_searched_vs_random(result, path_prefix, value="test_accuracy",
                            xlabel="test accuracy (short protocol)"):
  """quality.png/.pdf: each random cell's `value` as a dot, each searched cell's
  as a line with its percentile."""
  fig = plots.figure((7.0, 3.2))
  ax = fig.add_subplot()
  randoms = [r[value] for r in result["random"]]
  ax.scatter(randoms, np.zeros(len(randoms)) + np.linspace(-0.15, 0.15, len(randoms)),
             color="grey", alpha=0.6, label=f"random cells (R = {len(randoms)})")
  for i, searched in enumerate(result["searched"]):
    ax.axvline(searched[value], color=f"C{i}", lw=2,
               label=f"seed {searched['seed']}: {searched['percentile']:.0f}th percentile")
  ax.set_yticks([])
  ax.set_ylim(-1, 1)
  ax.set_xlabel(xlabel)
  ax.set_title(f"{result['space']}: searched vs random cells; mean percentile "
               f"{result['mean_percentile']:.1f}", fontsize=9)
  ax.legend(fontsize=7, loc="best")
  plots.save(fig, path_prefix)


# Fields that do not change what a training computes, at these values: a pool
# recorded before they existed still matches.
_NEUTRAL = {("input", "pipeline"): ("memory",), ("input", "workers"): None,
            ("data", "skip_unreadable"): (False,)}


def _comparable(protocol):
  protocol = json.loads(json.dumps(protocol, default=str))
  protocol.get("model", {}).pop("genotype", None)
  for (section, key), values in _NEUTRAL.items():
    part = protocol.get(section, {})
    if key in part and (values is None or part[key] in values):
      part.pop(key)
  return protocol


def check_random_pool(protocol, pool_dir):
  """Checks (or records) that the random cells in `pool_dir` were trained with
  `protocol` (a JSON-able dict), so that several benchmarks can share them."""
  protocol = _comparable(protocol)
  path = os.path.join(pool_dir, "random", "protocol.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      stored = _comparable(json.load(f))
    if stored != protocol:
      raise ValueError(f"--random_workdir {pool_dir}: its random cells were trained with "
                       f"another protocol ({path}); use a fresh directory")
  else:
    files.write_json(path, protocol)


def draw_random_cells(space, pool_dir, random_seed, count):
  """`count` architectures drawn uniformly from `space` by a generator seeded with
  `random_seed`, each written once to `pool_dir/random/r<seed>_<i>.json`."""
  rng = np.random.default_rng(random_seed)
  randoms = []
  for i in range(count):
    architecture = space.random_architecture(rng)
    path = os.path.join(pool_dir, "random", f"r{random_seed}_{i:03d}.json")
    if not os.path.exists(path):
      files.write_json(path, architecture)
    randoms.append({"index": i, "genotype_file": path, "architecture": architecture})
  return randoms


def run_quality(config, workdir, seeds, random_cells, random_seed=1000, log=print,
                random_workdir=None, train_seeds=(0,), benchmark_table=None,
                benchmark_column=None):
  """Runs the benchmark (see module docstring); returns and writes quality.json.

  `random_workdir` (default `workdir`) holds the random cells and their
  trainings: benchmarks of several method options with one protocol can share
  it, so each option costs only its searches and its searched cells.
  `train_seeds`: every cell is trained once per training seed and scored by its
  mean test accuracy (training seed 0 in `train/<cell>`, seed t in
  `train/<cell>_t<t>`), which averages out the protocol's initialisation noise.

  `benchmark_table`: a CSV of NB201 cells and their accuracies (the user's
  file, `benchmark_table.load`). Each searched cell is then scored from the
  table, without training and without random cells: its accuracy, its
  percentile among all the table's cells, and the mean and sd over seeds."""
  from bayesnas_jax.search import config as config_check  # pylint: disable=import-outside-toplevel
  if not seeds:
    raise ValueError("--seeds: expected at least one seed")
  train_seeds = [int(t) for t in train_seeds]
  if not train_seeds or len(set(train_seeds)) != len(train_seeds):
    raise ValueError(f"--train_seeds: expected distinct integers, got {train_seeds}")
  if random_cells < 1:
    raise ValueError(f"--random_cells: expected a positive integer, got {random_cells}")
  if config.get("space", {}).get("name") == "rnn":
    if benchmark_table:
      raise ValueError("--benchmark_table: a table of NB201 cells needs the nb201 space, "
                       "got config.space.name = 'rnn'")
    from bayesnas_jax.quality import recurrent  # pylint: disable=import-outside-toplevel
    return recurrent.run_quality(config, workdir, seeds, random_cells, random_seed, log,
                                 random_workdir=random_workdir, train_seeds=train_seeds)
  config_check.validate(config)
  if "quality" not in config:
    raise ValueError("config.quality: this search config has no `quality` section (the "
                     "short training protocol); see configs/nb201_cifar10_search.py")
  space = spaces.make(config.space)
  table = None
  if benchmark_table:
    if space.name != "nb201":
      raise ValueError(f"--benchmark_table: a table of NB201 cells needs the nb201 space, "
                       f"got config.space.name = {space.name!r}")
    table = benchmark_table_lib.load(benchmark_table, benchmark_column)
    log(f"benchmark table {benchmark_table}: {len(table.accuracy)} cells, column "
        f"{table.column!r}")
  else:
    protocol_config(config, "", 0)  # checks config.quality.eval_config early
  os.makedirs(workdir, exist_ok=True)
  searched = []
  for seed in seeds:
    search_dir = os.path.join(workdir, f"search_seed{seed}")
    log(f"search, seed {seed} → {search_dir}")
    search_config = config.copy_and_resolve_references()
    with search_config.unlocked():
      search_config.seed = seed
      search_config.retrain.epochs = 0
    summary_path = os.path.join(search_dir, "summary.json")
    if os.path.exists(summary_path):
      with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    else:
      summary = run.run_search(search_config, search_dir, log=log)
    genotype_path = os.path.join(search_dir, "genotype.json")
    searched.append({"seed": seed, "genotype_file": genotype_path,
                     "architecture": space.load_architecture(genotype_path),
                     "search_seconds": summary["search_seconds"],
                     **({"nb201": summary["nb201"]} if "nb201" in summary else {})})
  if table is not None:
    return _table_result(space, table, searched, workdir, log)
  pool = random_workdir or workdir
  check_random_pool(protocol_config(config, "", 0).to_dict(), pool)
  randoms = draw_random_cells(space, pool, random_seed, random_cells)
  # Every cell is trained with the same training seeds: differences between
  # cells are not differences of initialisation luck.
  cells = [(f"searched_seed{s['seed']}", s, workdir) for s in searched]
  cells += [(f"random_r{random_seed}_{r['index']:03d}", r, pool) for r in randoms]
  runs = [(cell, t) for cell in cells for t in train_seeds]
  for n, ((name, cell, base), t) in enumerate(runs):
    label = name if t == 0 else f"{name}_t{t}"
    log(f"[{n + 1}/{len(runs)}] training {label} with the short protocol"
        + (f" (training seed {t})" if len(train_seeds) > 1 else ""))
    summary = _train_cell(config, cell["genotype_file"], t,
                          os.path.join(base, "train", label), log)
    cell.setdefault("test_accuracies", []).append(summary["final_test_accuracy"])
    cell["params"] = summary["params"]
    log(f"  test accuracy {summary['final_test_accuracy']:.4f}, "
        f"{summary['params']} parameters")
  for _, cell, _ in cells:
    cell["test_accuracy"] = float(np.mean(cell["test_accuracies"]))
  random_accuracies = [r["test_accuracy"] for r in randoms]
  for s in searched:
    s["percentile"] = percentile(s["test_accuracy"], random_accuracies)
  device = jax.devices()[0]
  result = {
      "space": space.name, "date": datetime.date.today().isoformat(),
      "device": f"{device.platform}:{device.device_kind}",
      "seeds": list(seeds), "random_seed": random_seed, "train_seeds": train_seeds,
      "random_workdir": os.path.abspath(pool),
      "mean_percentile": float(np.mean([s["percentile"] for s in searched])),
      "mean_searched_accuracy": float(np.mean([s["test_accuracy"] for s in searched])),
      "random_accuracy": {"mean": float(np.mean(random_accuracies)),
                          "median": float(np.median(random_accuracies)),
                          "max": float(np.max(random_accuracies))},
      "searched": searched, "random": randoms,
      "stability": stability([s["architecture"] for s in searched]),
      "protocol": protocol_config(config, "", 0).to_dict(),
  }
  files.write_json(os.path.join(workdir, "quality.json"), result)
  plot_searched_vs_random(result, os.path.join(workdir, "quality"))
  return {k: result[k] for k in ("space", "mean_percentile", "mean_searched_accuracy",
                                 "random_accuracy")} | {
      "searched": [{k: s[k] for k in ("seed", "test_accuracy", "percentile",
                                      "search_seconds")} for s in searched]}


def _table_result(space, table, searched, workdir, log):
  """quality.json and quality.png of a benchmark-table lookup."""
  rows, summary = benchmark_table_lib.score(
      table, [{"seed": s["seed"], "nb201": s["nb201"], "search_seconds": s["search_seconds"],
               "architecture": s["architecture"]} for s in searched])
  for r in rows:
    log(f"seed {r['seed']}: {r['nb201']}  table accuracy {r['table_accuracy']:.2f} "
        f"({r['table_percentile']:.1f}th percentile)")
  log(f"mean {summary['mean']:.2f}, sd {summary['sd']:.2f} over {len(rows)} seeds")
  device = jax.devices()[0]
  result = {"space": space.name, "date": datetime.date.today().isoformat(),
            "device": f"{device.platform}:{device.device_kind}",
            "seeds": [r["seed"] for r in rows], "benchmark": table.describe(),
            "table_accuracy": summary,
            "searched": [{k: v for k, v in r.items() if k != "architecture"} for r in rows],
            "stability": stability([r["architecture"] for r in rows])}
  files.write_json(os.path.join(workdir, "quality.json"), result)
  _plot_table(result, table, os.path.join(workdir, "quality"))
  return {"space": space.name, "table_accuracy": summary,
          "searched": [{k: r[k] for k in ("seed", "nb201", "table_accuracy",
                                          "table_percentile")} for r in rows]}


def _plot_table(result, table, path_prefix):
  fig = plots.figure((7.0, 3.2))
  ax = fig.add_subplot()
  values = np.fromiter(table.accuracy.values(), np.float64)
  ax.hist(values, bins=np.linspace(max(values.min(), np.percentile(values, 1)), values.max(),
                                   60), color="grey", alpha=0.6,
          label=f"all {values.size} cells of the table")
  for i, s in enumerate(result["searched"]):
    ax.axvline(s["table_accuracy"], color=f"C{i % 10}", lw=1.5,
               label=f"seed {s['seed']}: {s['table_accuracy']:.2f}")
  summary = result["table_accuracy"]
  ax.set_xlabel(f"benchmark accuracy ({table.column})")
  ax.set_title(f"{result['space']}: searched cells in the benchmark table; mean "
               f"{summary['mean']:.2f}, sd {summary['sd']:.2f}", fontsize=9)
  ax.legend(fontsize=6, loc="upper left")
  plots.save(fig, path_prefix)
