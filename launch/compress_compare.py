"""BayesNAS compression against magnitude pruning and the group lasso, at equal FLOPs.

  python -m launch.compress_compare --config=configs/compress_lenet300_mnist.py \\
      --workdir=workdirs/lenet300_compare [--config.compress.lambda_=1e-6 ...]

Runs the config's Algorithm 2 (`method=bayes`) in WORKDIR/bayes, then the two
baselines in WORKDIR/magnitude and WORKDIR/group_lasso with the same epochs, pruned
by weight norm to the architecture the Bayesian run found (so the same units per
layer and the same multiply-adds), and prints one table (also compare.json). The
baselines start from the Bayesian run's dense baseline (WORKDIR/bayes/baseline).
"""
import copy
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from bayesnas_jax import files, launcher
from bayesnas_jax.compress import run

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A compression config.", lock_config=False)
flags.DEFINE_string("workdir", None, "Directory for the three runs and compare.json.")
flags.mark_flags_as_required(["config", "workdir"])

FIELDS = ("architecture_after", "flops_after", "params_after", "test_error_after")


def compare(config, workdir, log=launcher.log):
  rows = {}
  bayes = copy.deepcopy(config)
  bayes.compress.method = "bayes"
  log("== bayes")
  rows["bayes"] = run.run_compress(bayes, os.path.join(workdir, "bayes"), log=log)
  for method in ("magnitude", "group_lasso"):
    other = copy.deepcopy(config)
    other.compress.method = method
    other.compress.target_architecture = rows["bayes"]["architecture_after"]
    # The same dense baseline, restored rather than trained again.
    if not other.compress.get("baseline_checkpoint"):
      other.compress.baseline_checkpoint = os.path.join(workdir, "bayes", "baseline")
    log(f"== {method}")
    rows[method] = run.run_compress(other, os.path.join(workdir, method), log=log)
  base = rows["bayes"]
  lines = [f"dense baseline {base['architecture_before']}: {base['flops_before']} "
           f"multiply-adds, test error {base['test_error_before']:.2f}%",
           "| method | architecture | multiply-adds | parameters | test error (%) |",
           "| --- | --- | --- | --- | --- |"]
  for method, row in rows.items():
    lines.append(f"| {method} | {row['architecture_after']} | {row['flops_after']} | "
                 f"{row['params_after']} | {row['test_error_after']:.2f} |")
  table = "\n".join(lines)
  print(table)
  files.write_json(os.path.join(workdir, "compare.json"),
                   {m: {k: r[k] for k in FIELDS + ("test_error_before", "flops_before")}
                    for m, r in rows.items()})
  return {m: {k: r[k] for k in FIELDS} for m, r in rows.items()}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")

  def work():
    run.validate(FLAGS.config)
    compare(FLAGS.config, FLAGS.workdir)
    return None

  try:
    work()
  except (ValueError, KeyError) as err:
    print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=launcher.parse_flags)
