"""Entry point: `python -m launch.main --config=configs/x.py --workdir=DIR`.

Fields are overridden with `--config.a.b=value`; presets with
`--config=configs/darts_cifar10_search.py:0.007`. Relaunching on the workdir of
an interrupted run resumes it.
"""
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from bayesnas_jax import launcher

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Configuration file (get_config).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results "
                    "(not needed with --config.mode=summary).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.workdir is None and FLAGS.config.get("mode", "search") != "summary":
    raise app.UsageError("--workdir is required (except with --config.mode=summary)")
  launcher.initialize_distributed()
  sys.exit(launcher.main(FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
  app.run(main, flags_parser=launcher.parse_flags)
