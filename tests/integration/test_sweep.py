"""The sweep launcher writes the job scripts for every (λ_w, seed) pair."""
import subprocess
import sys

from tests.tests_support import ROOT


def _sweep(tmp_path, *args):
  return subprocess.run([sys.executable, "-m", "launch.sweep", f"--workdir={tmp_path}",
                         "--lambda_w=0.01,0.005", "--seeds=0,3", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_slurm_array_job_lists_every_run(tmp_path):
  result = _sweep(tmp_path, "--target=slurm", "--config.input.batch_size=128")
  assert result.returncode == 0, result.stderr
  script = (tmp_path / "sweep.sbatch").read_text()
  assert "#SBATCH --array=0-3" in script and "--gres=gpu:1" in script
  for lam in ("0.01", "0.005"):
    for seed in ("0", "3"):
      assert (f"--config.search.lambda_w={lam} --config.seed={seed} "
              "--config.input.batch_size=128") in script


def test_tpu_vm_scripts_one_per_run(tmp_path):
  result = _sweep(tmp_path, "--target=tpu_vm", "--tpu_name=v4-32")
  assert result.returncode == 0, result.stderr
  scripts = sorted(p.name for p in tmp_path.glob("*.tpu.sh"))
  assert scripts == sorted(f"lambda_{l}_seed_{s}.tpu.sh"
                           for l in ("0.01", "0.005") for s in ("0", "3"))
  text = (tmp_path / "lambda_0.005_seed_3.tpu.sh").read_text()
  assert "gcloud compute tpus tpu-vm ssh v4-32" in text and "--worker=all" in text
  assert "--config.search.lambda_w=0.005" in text
