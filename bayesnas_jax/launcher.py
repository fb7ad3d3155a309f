"""What `launch/main.py` runs: validate the config, then dispatch on its mode.

Bad input gives one line on stderr naming the field or file and exit status 2,
before anything is written to the workdir.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import sys
from typing import NamedTuple

from absl import logging

from bayesnas_jax.checkpoints import Interrupted
from bayesnas_jax.data import DataNotFoundError


class Mode(NamedTuple):
  """A run mode: `validate(config)` raises ValueError with one line naming the
  field; `run(config, workdir, log)` returns the summary printed as JSON.
  Both are "module:function" names, imported when the mode runs."""
  validate: str
  run: str
  writes: bool = True  # False: prints only (no workdir needed)


MODES = {
    "search": Mode("bayesnas_jax.search.config:validate",
                   "bayesnas_jax.search.run:run_search"),
    "train": Mode("bayesnas_jax.evaluation.train:validate",
                  "bayesnas_jax.evaluation.train:train_and_evaluate"),
    "summary": Mode("bayesnas_jax.evaluation.train:validate",
                    "bayesnas_jax.launcher:_summary", writes=False),
    "compress": Mode("bayesnas_jax.compress.run:validate",
                     "bayesnas_jax.compress.run:run_compress"),
    "rnn_search": Mode("bayesnas_jax.lm.search:validate",
                       "bayesnas_jax.launcher:_rnn_search"),
    "rnn_train": Mode("bayesnas_jax.lm.search:validate",
                      "bayesnas_jax.lm.train:train_cell"),
}


def resolve(name: str):
  """The function named "package.module:function"."""
  module, _, function = name.partition(":")
  return getattr(importlib.import_module(module), function)


def _summary(config, workdir, log):
  del workdir, log
  return resolve("bayesnas_jax.evaluation.train:summarize")(config)


def _rnn_search(config, workdir, log):
  summary = resolve("bayesnas_jax.lm.search:run")(config, workdir, log=log)
  return {k: v for k, v in summary.items() if k != "rounds"}


def main(config, workdir: str) -> int:
  logging.set_verbosity(logging.WARNING)  # orbax and XLA info lines are noise here

  def work():
    name = config.get("mode", "search")
    if name not in MODES:
      raise ValueError(f"config.mode: expected one of {', '.join(MODES)}, got {name!r}")
    mode = MODES[name]
    resolve(mode.validate)(config)
    if mode.writes and os.path.exists(workdir) and not os.path.isdir(workdir):
      raise ValueError(f"--workdir: {workdir} exists and is not a directory")
    apply_runtime_options(config)
    return resolve(mode.run)(config, workdir, log=log)

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
  except Interrupted as err:
    print(f"stopped: {err}; relaunch the same command to resume", file=sys.stderr)
    return 3
  except (ValueError, KeyError, DataNotFoundError, FileNotFoundError) as err:
    # One line: a missing dataset's list of places tried is joined into it.
    # (str of a KeyError quotes its message; other messages keep their quotes.)
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    message = " ".join(line.strip() for line in str(text).splitlines())
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


def int_list(flag: str, values) -> list[int]:
  """A comma-separated list flag's values as integers; a one-line error naming
  the flag and exit status 2 otherwise."""
  try:
    return [int(v) for v in values]
  except ValueError:
    print(f"error: --{flag}: expected comma-separated integers, got {values}",
          file=sys.stderr)
    sys.exit(2)
