"""Benchmark of one search step: `python -m launch.bench --config=configs/x.py`.

Prints one JSON object for the config's search network (default: the 8-cell,
C=16 DARTS network of configs/darts_cifar10_search.py) with the joint W+w
training step and the curvature step measured side by side in one run, on
synthetic CIFAR-shaped data: device, batch, compile_s (both steps),
train_step_s, images_per_s, curvature_source and arch_scalars (the exact
sources cost one pass per scalar and batch), curvature_step_s, ratio
(curvature / training step) and peak_bytes (XLA's buffer assignment: arguments + outputs + temporaries
of the larger step; on GPU also the allocator's peak).
"""
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
from bayesnas_jax.search import objective
from bayesnas_jax.search.run import initial_state
from launch.timing import median_time

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/darts_cifar10_search.py",
                                "Search configuration file.", lock_config=True)
flags.DEFINE_integer("repeats", 5, "Timed repetitions of each step (median reported).")
flags.DEFINE_integer("image_size", 32, "Height and width of the synthetic images.")


def _memory(compiled):
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
             + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)


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
  _, train_step, curvature_step, _ = objective.make_steps(config, space)
  key = jax.random.PRNGKey(1)
  penalty = objective.penalty_weights(state["prior"]["omega"],
                                     objective.penalty_lambdas(config.search, 1))
  train_args = (state["params"], state["opt_state"], batch, key, penalty,
                state["masks"], jnp.asarray(1.0))
  curvature_args = (state["params"], batch, state["masks"])
  start = time.perf_counter()
  train_compiled = train_step.lower(*train_args).compile()
  train_compile = time.perf_counter() - start
  start = time.perf_counter()
  curvature_compiled = curvature_step.lower(*curvature_args).compile()
  curvature_compile = time.perf_counter() - start
  train_s = median_time(train_compiled, train_args, FLAGS.repeats)
  curvature_s = median_time(curvature_compiled, curvature_args, FLAGS.repeats)
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
      "compile_s": {"train": round(train_compile, 2), "curvature": round(curvature_compile, 2)},
      "train_step_s": round(train_s, 5),
      "images_per_s": round(batch_size / train_s, 1),
      "curvature_source": config.search.get("curvature_source", "recursion"),
      "arch_scalars": int(sum(np.size(a) for a in jax.tree_util.tree_leaves(
          state["params"]["arch"]))),
      "curvature_step_s": round(curvature_s, 5),
      "ratio": round(curvature_s / train_s, 3),
      "peak_bytes": {"train": _memory(train_compiled),
                     "curvature": _memory(curvature_compiled)},
  }
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    result["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main, flags_parser=launcher.parse_flags)
