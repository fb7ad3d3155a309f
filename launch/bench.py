"""Benchmark of a search round: `python -m launch.bench --config=configs/x.py`.

Prints one JSON object for the config's search network (default: the 8-cell,
C=16 DARTS network of configs/darts_cifar10_search.py), measured side by side
in one run on synthetic CIFAR-shaped data:

* the joint W+w training step: compile_s, train_step_s, images_per_s;
* the curvature of the architecture scalars for each source in `--sources`
  (default: the config's own, then the others of "sampled, ggn, recursion"
  that differ): its step time and `ratio` to the training step (with
  `curvature_pass = "during"` the extra cost the curvature adds to a training
  step instead), arch_scalars (the exact sources cost one pass per scalar);
* `round`: the whole search round of the config on `--examples` training images
  (default: `input.train_examples`, else 50,000) per phase — warm-up, training,
  curvature, HARD update, derivation — in seconds and as shares, so a user sees
  where a search spends its time on their device;
* peak_bytes (XLA's buffer assignment: arguments + outputs + temporaries; on
  GPU also the allocator's peak).
"""
import copy
import datetime
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from bayesnas_jax import launcher, spaces
from bayesnas_jax.search import hard, objective
from bayesnas_jax.search.run import build_schedule, initial_state
from launch.timing import median_time

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/darts_cifar10_search.py",
                                "Search configuration file.", lock_config=True)
flags.DEFINE_integer("repeats", 5, "Timed repetitions of each step (median reported).")
flags.DEFINE_integer("image_size", 32, "Height and width of the synthetic images.")
flags.DEFINE_list("sources", [], "Curvature sources to time side by side (default: the "
                  "config's, then sampled, ggn and recursion).")
flags.DEFINE_integer("examples", 0, "Training images of the round (default: "
                     "input.train_examples, else 50,000).")


def _memory(compiled):
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
             + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)


def _with_source(config, source):
  config = copy.deepcopy(config)
  with config.unlocked():
    config.search.curvature_source = source
    if source in ("exact", "ggn"):
      config.search.curvature_pass = "after"
  return config


def _time_source(config, space, state, batch, train_s):
  """(compile seconds, step seconds, ratio) of `config`'s curvature source:
  the curvature step after training, or with `curvature_pass = "during"` the
  training step that also measures the curvature, less a plain one."""
  _, train_step, curvature_step, _ = objective.make_steps(config, space)
  key = jax.random.PRNGKey(1)
  if config.search.curvature_pass == "during":
    args = _train_args(config, state, batch)
    fn = train_step
  else:
    args = (state.params, batch, state.masks, key)
    fn = curvature_step
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - start
  step_s = median_time(compiled, args, FLAGS.repeats)
  extra = step_s - train_s if config.search.curvature_pass == "during" else step_s
  return compile_s, extra, compiled


def _train_args(config, state, batch):
  penalty = objective.penalty_weights(state.prior.omega,
                                      objective.penalty_lambdas(config.search, 1))
  return (state.params, state.opt_state, batch, jax.random.PRNGKey(1), penalty,
          state.masks, jnp.asarray(1.0))


def _round(config, space, state, train_s, curvature_s):
  """Seconds per phase of one search round of `config` at these step times."""
  examples = FLAGS.examples or config.input.get("train_examples", 0) or 50_000
  fraction = config.search.warmup_fraction
  warmup = int(round(examples * fraction)) if fraction > 0 else 0
  sizes = {"warmup": warmup, "search": examples - warmup, "train": examples,
           "test": config.input.batch_size}
  phases = [p for p in build_schedule(config, sizes) if p[0] in ("warmup", "train",
                                                                 "curvature", "update")]
  phases = [p for p in phases if p[1] in (-1, 0)]  # warm-up and the first round
  steps = {kind: sum(p[2] for p in phases if p[0] == kind)
           for kind in ("warmup", "train", "curvature")}
  if config.search.curvature_pass == "during":
    k = config.search.curvature_batches
    steps["curvature"] = min(k, steps["train"]) if k > 0 else steps["train"]
  curvature = jax.tree_util.tree_map(lambda a: jnp.abs(a) + 0.1, state.params["arch"])
  search = config.search

  def update():
    return hard.hard_update(
        state.params["arch"], curvature, state.prior, spec=spaces.cell_specs(space),
        lambda_w=float(search.lambda_w), grouping=search.grouping,
        dependency=search.dependency, threshold=float(search.prune_threshold),
        rank_by=search.get("rank_by", "gamma"),
        zero_curvature=search.get("zero_curvature", "keep"),
        prune_rule=search.get("prune_rule", "entropy"))

  jax.block_until_ready(update())
  start = time.perf_counter()
  new_prior = jax.block_until_ready(update())[0]
  update_s = time.perf_counter() - start
  prior = jax.device_get(new_prior)
  space.derive(prior, search)
  start = time.perf_counter()
  space.derive(prior, search)
  derive_s = time.perf_counter() - start
  seconds = {"warmup": steps["warmup"] * train_s, "train": steps["train"] * train_s,
             "curvature": steps["curvature"] * curvature_s, "update": update_s,
             "derive": derive_s}
  total = sum(seconds.values())
  return {"examples": examples, "steps": steps,
          "seconds": {k: round(v, 5) for k, v in seconds.items()},
          "share": {k: round(v / total, 3) for k, v in seconds.items()},
          "total_s": round(total, 2),
          "curvature_over_training": round(seconds["curvature"] / max(seconds["train"],
                                                                      1e-12), 3)}


def main(argv):
  del argv
  config = FLAGS.config
  launcher.apply_runtime_options(config)
  batch_size = config.input.batch_size
  size = FLAGS.image_size
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8),
           "label": rng.integers(0, config.space.num_classes, (batch_size,), dtype=np.int32)}
  space = spaces.make(config.space)
  state = initial_state(config, space, jax.random.PRNGKey(0), (size, size, 3))
  own = config.search.get("curvature_source", "recursion")
  sources = FLAGS.sources or [own] + [s for s in ("sampled", "ggn", "recursion") if s != own]
  for source in sources:
    if source not in objective.CURVATURE_SOURCES:
      raise app.UsageError(f"--sources: expected names from {objective.CURVATURE_SOURCES}, "
                           f"got {source!r}")
  # The plain training step: the "after" pass, whose step measures no curvature.
  plain = _with_source(config, own)
  with plain.unlocked():
    plain.search.curvature_pass = "after"
  _, train_step, _, _ = objective.make_steps(plain, space)
  train_args = _train_args(config, state, batch)
  start = time.perf_counter()
  train_compiled = train_step.lower(*train_args).compile()
  train_compile = time.perf_counter() - start
  train_s = median_time(train_compiled, train_args, FLAGS.repeats)
  timed, peaks = {}, {"train": _memory(train_compiled)}
  for source in sources:
    source_config = _with_source(config, source)
    compile_s, step_s, compiled = _time_source(source_config, space, state, batch, train_s)
    timed[source] = {"pass": source_config.search.curvature_pass,
                     "compile_s": round(compile_s, 2), "curvature_step_s": round(step_s, 5),
                     "ratio": round(step_s / train_s, 3)}
    peaks[source] = _memory(compiled)
  device = jax.devices()[0]
  result = {
      "device": f"{device.platform}:{device.device_kind}",
      "devices": jax.device_count(),
      "date": datetime.date.today().isoformat(),
      "batch": batch_size,
      "space": config.space.name,
      "layers": config.space.get("layers", config.space.get("cells_per_stage",
                                                            config.space.get("blocks_per_stage"))),
      "channels": config.space.get("channels"),
      "ops": len(config.space.get("ops", ())),
      "space_config": {k: v for k, v in config.space.items()
                       if isinstance(v, (bool, int, float, str))},
      "compute_dtype": config.search.compute_dtype,
      "matmul_precision": config.get("matmul_precision") or "jax default",
      "remat": bool(config.space.get("remat", False)),
      "compile_s": {"train": round(train_compile, 2), "curvature": timed[sources[0]]["compile_s"]},
      "train_step_s": round(train_s, 5),
      "images_per_s": round(batch_size / train_s, 1),
      "curvature_source": sources[0],
      "curvature_samples": int(config.search.get("curvature_samples", 1)),
      "arch_scalars": int(sum(np.size(a) for a in jax.tree_util.tree_leaves(
          state.params["arch"]))),
      "curvature_step_s": timed[sources[0]]["curvature_step_s"],
      "ratio": timed[sources[0]]["ratio"],
      "sources": timed,
      "round": _round(_with_source(config, sources[0]), space, state, train_s,
                      timed[sources[0]]["curvature_step_s"]),
      "peak_bytes": peaks,
  }
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    result["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main, flags_parser=launcher.parse_flags)
