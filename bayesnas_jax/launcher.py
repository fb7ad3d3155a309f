"""What `launch/main.py` runs: validate the config, then dispatch on its mode.

Bad input gives one line on stderr naming the field or file and exit status 2,
before anything is written to the workdir.
"""
from __future__ import annotations

import json
import os
import sys

from absl import logging

from bayesnas_jax import config_check
from bayesnas_jax.data import DataNotFoundError


def main(config, workdir: str) -> int:
  logging.set_verbosity(logging.WARNING)  # orbax and XLA info lines are noise here

  def work():
    mode = config.get("mode", "search")
    if mode == "search":
      config_check.validate(config)
    elif mode in ("train", "summary"):
      from bayesnas_jax.evaluation import train  # pylint: disable=import-outside-toplevel
      train.validate(config)
    else:
      raise ValueError(f"config.mode: expected 'search', 'train' or 'summary', got {mode!r}")
    if mode != "summary" and os.path.exists(workdir) and not os.path.isdir(workdir):
      raise ValueError(f"--workdir: {workdir} exists and is not a directory")
    apply_runtime_options(config)
    if mode == "search":
      from bayesnas_jax.search import run  # pylint: disable=import-outside-toplevel
      return run.run_search(config, workdir, log=log)
    if mode == "train":
      return train.train_and_evaluate(config, workdir, log=log)
    return train.summarize(config)

  return run_guarded(work)


def run_guarded(work) -> int:
  """Runs `work()` and prints its result as JSON (exit 0); bad input gives one
  line on stderr and exit 2, an early stop (stop_after_steps) exit 3."""
  logging.set_verbosity(logging.WARNING)
  try:
    summary = work()
  except RuntimeError as err:
    if type(err).__name__ != "Interrupted":
      raise
    print(f"stopped: {err}; relaunch the same command to resume", file=sys.stderr)
    return 3
  except (ValueError, KeyError, DataNotFoundError) as err:
    # One line: a missing dataset's list of places tried is joined into it.
    message = " ".join(line.strip() for line in str(err).strip("'\"").splitlines())
    print(f"error: {message}", file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=1))
  return 0


MATMUL_PRECISIONS = ("", "default", "high", "highest", "bfloat16", "tensorfloat32",
                     "float32")


def apply_runtime_options(config):
  """JAX settings named by the config: `compilation_cache_dir` (persistent XLA
  cache) and `matmul_precision` (JAX's default precision of float32 matmuls and
  convolutions; "" leaves JAX's default: TF32 on recent NVIDIA GPUs, bf16 passes
  on TPU, float32 on CPU)."""
  import jax  # pylint: disable=import-outside-toplevel
  precision = config.get("matmul_precision", "")
  if precision not in MATMUL_PRECISIONS:
    raise ValueError(f"config.matmul_precision: expected one of {MATMUL_PRECISIONS}, "
                     f"got {precision!r}")
  if precision:
    jax.config.update("jax_default_matmul_precision", precision)
  if config.get("compilation_cache_dir"):
    jax.config.update("jax_compilation_cache_dir",
                      os.path.expanduser(config.compilation_cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def initialize_distributed():
  """Joins a multi-host run when the environment describes one: the variables
  of `jax.distributed.initialize` (JAX_COORDINATOR_ADDRESS, …) or a SLURM job
  with several tasks, or a Cloud TPU VM slice (auto-detected by JAX)."""
  import jax  # pylint: disable=import-outside-toplevel
  several_slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  if os.environ.get("JAX_COORDINATOR_ADDRESS") or several_slurm_tasks or os.environ.get(
      "BAYESNAS_DISTRIBUTED") == "1":
    jax.distributed.initialize()


def log(message: str):
  print(message, file=sys.stderr, flush=True)
