"""The same search round on 8 virtual CPU devices and on one gives the same γ and
genotype (batch sharded over a device mesh, state replicated).

Sharded reductions add in another order, and the round's SGD steps amplify those
last-bit differences. How much depends on the regime: on class-separable images
the tiny search drove its loss to ~0, H to ~1e-11 and γ to ~2·10⁴, where γ is
hypersensitive to the order of sums (it failed at rtol 1e-3 on one machine,
0.49% apart). The images here are noise, so the loss stays high, H ≥ 7e-5 and
γ is 0.47–2.9. Measured 2026-12-02 on this problem: γ agrees to 1.4e-6 relative,
H to 4.7e-6, w to 1.4e-7, and the genotype is identical; on 2026-12-08 (jax
0.10.2) at XLA's defaults γ to 7.1e-6, H to 6.0e-5 (largest relative gap), w to
2.4e-7, genotype identical. Both runs now use the suite's XLA flags
(tests/conftest.py: optimisation level 0, fusion emitters off), which compile in
a third of the CPU time (37 s against 98 s for the test, 2026-12-08); there γ
agrees to 2.0e-5 and H to 1.2e-4, genotype identical: the tolerance of 1e-3
leaves a factor of ~8 on H and ~50 on γ. (On the earlier, separable problem the
one-device program at level 0 moved H by up to 3.5%, 2026-11-23: that regime is
hypersensitive, this one is not.)"""
import json
import os
import subprocess
import sys

import numpy as np

from tests.tests_support import ROOT, make_image_folder

OVERRIDES = ["--config.input.batch_size=8", "--config.space.channels=4",
             "--config.space.layers=3", "--config.space.stem_multiplier=1",
             "--config.search.rounds=1", "--config.search.curvature_batches=2",
             "--config.retrain.epochs=0", "--config.search.warmup_fraction=0.25",
             "--config.tensorboard=False",
             "--config.space.ops=('skip_connect','sep_conv_3x3','max_pool_3x3',"
             "'avg_pool_3x3')"]


def _start(data, workdir, devices):
  # The suite's XLA flags (tests/conftest.py) in both runs; see the module docstring.
  flags = os.environ.get("XLA_FLAGS", "")
  if devices > 1:
    flags += f" --xla_force_host_platform_device_count={devices}"
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
  # Output to files, so that neither process waits on a full pipe.
  with open(f"{workdir}.out", "w", encoding="utf-8") as out, \
      open(f"{workdir}.err", "w", encoding="utf-8") as err:
    return subprocess.Popen(
        [sys.executable, "-m", "launch.main", f"--config={ROOT}/configs/quickstart.py",
         f"--workdir={workdir}", f"--config.data.path={data}", *OVERRIDES],
        cwd=ROOT, env=env, stdout=out, stderr=err, text=True)


def _result(process, workdir, devices):
  process.wait(timeout=900)
  with open(f"{workdir}.out", encoding="utf-8") as out, \
      open(f"{workdir}.err", encoding="utf-8") as err:
    stdout, stderr = out.read(), err.read()
  assert process.returncode == 0, stderr[-3000:]
  summary = json.loads(stdout)
  assert summary["devices"] == devices
  with open(os.path.join(workdir, "architecture.json"), encoding="utf-8") as f:
    return json.load(f), summary["genotype"]


def _search_both(data, tmp_path):
  """Both searches at once: most of their time is single-threaded compiling."""
  processes = {n: _start(data, tmp_path / str(n), n) for n in (1, 8)}
  try:
    return [_result(processes[n], tmp_path / str(n), n) for n in (1, 8)]
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.kill()


def test_eight_devices_match_one(tmp_path):
  data = make_image_folder(tmp_path / "images", separable=False)
  (one, genotype_one), (eight, genotype_eight) = _search_both(data, tmp_path)
  gamma_one = np.array([s["gamma"] for s in one["rounds"][0]["scalars"]])
  gamma_eight = np.array([s["gamma"] for s in eight["rounds"][0]["scalars"]])
  assert gamma_one.shape == gamma_eight.shape and gamma_one.size > 0
  np.testing.assert_allclose(gamma_eight, gamma_one, rtol=1e-3)
  curvature_one = np.array([s["H"] for s in one["rounds"][0]["scalars"]])
  curvature_eight = np.array([s["H"] for s in eight["rounds"][0]["scalars"]])
  np.testing.assert_allclose(curvature_eight, curvature_one, rtol=1e-3,
                             atol=1e-6 * np.abs(curvature_one).max())
  assert genotype_eight == genotype_one
