"""A λ_w × seed sweep of a search config.

  python -m launch.sweep --config=configs/darts_cifar10_search.py \\
      --lambda_w=0.01,0.007,0.005 --seeds=0,1,2 --workdir=workdirs/sweep --target=local

--target=local runs the searches here one after another (each resumable, so an
interrupted sweep picks up where it stopped). --target=slurm and --target=tpu_vm
only WRITE ready-to-submit job scripts into the workdir (nothing is submitted):
one SLURM array job for a GPU cluster, or one shell script per run for Cloud
TPU VMs. Extra `--config.a.b=v` overrides are passed through to every run.
"""
import itertools
import os
import shlex
import subprocess
import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "configs/darts_cifar10_search.py", "Search config file.")
flags.DEFINE_list("lambda_w", ["0.01", "0.007", "0.005"], "Values of search.lambda_w.")
flags.DEFINE_list("seeds", ["0"], "Seeds.")
flags.DEFINE_string("workdir", None, "Parent directory; each run gets a subfolder.")
flags.DEFINE_enum("target", "local", ["local", "slurm", "tpu_vm"], "Where the runs go.")
flags.DEFINE_string("slurm_partition", "gpu", "SLURM partition for --target=slurm.")
flags.DEFINE_string("slurm_time", "08:00:00", "SLURM time limit per run.")
flags.DEFINE_string("tpu_name", "my-tpu", "Cloud TPU VM name for --target=tpu_vm.")
flags.DEFINE_string("tpu_zone", "us-central2-b", "Cloud TPU zone for --target=tpu_vm.")
flags.mark_flag_as_required("workdir")


def runs(overrides):
  """(name, command) for every (λ_w, seed) pair."""
  out = []
  for lam, seed in itertools.product(FLAGS.lambda_w, FLAGS.seeds):
    float(lam), int(seed)  # one-line errors for bad values come from absl/float/int
    name = f"lambda_{lam}_seed_{seed}"
    command = [sys.executable if FLAGS.target == "local" else "python", "-m", "launch.main",
               f"--config={FLAGS.config}", f"--workdir={os.path.join(FLAGS.workdir, name)}",
               f"--config.search.lambda_w={lam}", f"--config.seed={seed}", *overrides]
    out.append((name, command))
  return out


def slurm_script(commands):
  lines = ["#!/bin/bash", "#SBATCH --job-name=bayesnas-sweep",
           f"#SBATCH --partition={FLAGS.slurm_partition}", "#SBATCH --gres=gpu:1",
           "#SBATCH --cpus-per-task=8", f"#SBATCH --time={FLAGS.slurm_time}",
           f"#SBATCH --array=0-{len(commands) - 1}",
           f"#SBATCH --output={FLAGS.workdir}/slurm-%A_%a.out", "set -euo pipefail",
           "# Submit from the repository root: sbatch " + os.path.join(FLAGS.workdir,
                                                                       "sweep.sbatch"),
           "COMMANDS=("]
  lines += [f"  {shlex.quote(shlex.join(c))}" for _, c in commands]
  lines += [")", 'eval "${COMMANDS[$SLURM_ARRAY_TASK_ID]}"']
  return "\n".join(lines) + "\n"


def tpu_script(name, command):
  inner = "cd bayesnas_jax && " + shlex.join(command)
  return "\n".join([
      "#!/bin/bash", "set -euo pipefail",
      f"# Run {name} on the Cloud TPU VM {FLAGS.tpu_name} (all hosts of the slice;",
      "# jax.distributed is initialised from the TPU environment).",
      f"gcloud compute tpus tpu-vm ssh {FLAGS.tpu_name} --zone={FLAGS.tpu_zone} "
      f"--worker=all --command={shlex.quote('BAYESNAS_DISTRIBUTED=1 ' + inner)}", ""])


def main(argv):
  overrides = [a for a in argv[1:] if a.startswith("--config.")]
  unknown = [a for a in argv[1:] if not a.startswith("--config.")]
  if unknown:
    raise app.UsageError(f"unexpected arguments: {unknown}")
  commands = runs(overrides)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  if FLAGS.target == "local":
    for name, command in commands:
      print(f"== {name}: {shlex.join(command)}", flush=True)
      code = subprocess.call(command)
      if code:
        sys.exit(f"error: run {name} failed with exit status {code}")
    return
  if FLAGS.target == "slurm":
    path = os.path.join(FLAGS.workdir, "sweep.sbatch")
    with open(path, "w", encoding="utf-8") as f:
      f.write(slurm_script(commands))
    print(f"wrote {path} ({len(commands)} array tasks); submit with: sbatch {path}")
    return
  for name, command in commands:
    path = os.path.join(FLAGS.workdir, f"{name}.tpu.sh")
    with open(path, "w", encoding="utf-8") as f:
      f.write(tpu_script(name, command))
    os.chmod(path, 0o755)
    print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
