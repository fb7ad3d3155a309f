"""What `launch/main.py` runs: validate the config, then dispatch on its mode.

Bad input gives one line on stderr naming the field or file and exit status 2,
before anything is written to the workdir.
"""
from __future__ import annotations

import difflib
import importlib.util
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
    elif mode == "compress":
      from bayesnas_jax.compress import run as compress_run  # pylint: disable=import-outside-toplevel
      compress_run.validate(config)
    elif mode in ("rnn_search", "rnn_train"):
      from bayesnas_jax.search import rnn_lm  # pylint: disable=import-outside-toplevel
      rnn_lm.validate(config)
    elif mode in ("train", "summary"):
      from bayesnas_jax.evaluation import train  # pylint: disable=import-outside-toplevel
      train.validate(config)
    else:
      raise ValueError(f"config.mode: expected 'search', 'train', 'summary', 'compress' or "
                       f"'rnn_search', got {mode!r}")
    if mode != "summary" and os.path.exists(workdir) and not os.path.isdir(workdir):
      raise ValueError(f"--workdir: {workdir} exists and is not a directory")
    apply_runtime_options(config)
    if mode == "search":
      from bayesnas_jax.search import run  # pylint: disable=import-outside-toplevel
      return run.run_search(config, workdir, log=log)
    if mode == "compress":
      return compress_run.run_compress(config, workdir, log=log)
    if mode == "rnn_search":
      summary = rnn_lm.run(config, workdir, log=log)
      return {k: v for k, v in summary.items() if k != "rounds"}
    if mode == "rnn_train":
      return rnn_lm.train_cell(config, workdir, log=log)
    if mode == "train":
      return train.train_and_evaluate(config, workdir, log=log)
    return train.summarize(config)

  return run_guarded(work)


def _load_config_file(spec: str):
  path, _, preset = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_config_for_message", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(preset) if preset else module.get_config()


def unknown_field_message(argv) -> str | None:
  """For an override `--config.a.b=v` naming no field: one line naming
  `config.a.b` and the nearest valid fields; None if every override is valid."""
  specs = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
  if not specs:
    return None
  try:
    config = _load_config_file(specs[-1])
  except Exception:  # pylint: disable=broad-except  (the config error itself is reported)
    return None
  for arg in argv:
    if not arg.startswith("--config.") and not arg.startswith("--noconfig."):
      continue
    name = arg.split("=", 1)[0].lstrip("-")
    name = name[2:] if name.startswith("noconfig.") else name
    node, walked = config, ["config"]
    for key in name.split(".")[1:]:
      keys = list(node.keys()) if hasattr(node, "keys") else []
      if key not in keys:
        near = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
        where = ".".join(walked)
        hint = (f"did you mean {', '.join(where + '.' + k for k in near)}?" if near
                else f"{where} has: {', '.join(sorted(keys))}" if keys
                else f"{where} is a value, not a group")
        return f"{name}: no such field; {hint}"
      node, walked = node[key], walked + [key]
  return None


def parse_flags(argv):
  """absl flags parser for the launchers: an override of a field that does not
  exist gives one line on stderr naming it (and the nearest valid field), exit 2."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as err:
    message = unknown_field_message(argv[1:])
    if message is None:
      raise
    del err
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


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
  except (ValueError, KeyError, DataNotFoundError, FileNotFoundError) as err:
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
