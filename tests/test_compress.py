"""Structured compression (thesis App. A): weight groups, their structural
consequences, the physically smaller network, and the LeNet-5 CLI on tiny IDX files."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bayesnas_jax import data, exact_diagonal, nn, value_grad_curvature
from bayesnas_jax.compress import groups, models, structure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("shape, kind, pruned, expected_false", [
    ((4, 3), "row", (1, 0), lambda m: m[1, :]),
    ((4, 3), "column", (0, 2), lambda m: m[:, 2]),
    ((4, 3), "shape", (3, 1), lambda m: m[3, 1]),
    ((3, 3, 2, 5), "filter", (0, 0, 0, 4), lambda m: m[:, :, :, 4]),
    ((3, 3, 2, 5), "channel", (0, 0, 1, 0), lambda m: m[:, :, 1, :]),
    ((3, 3, 2, 5), "shape", (2, 0, 1, 0), lambda m: m[2, 0, 1, :]),
])
def test_each_group_kind_masks_its_entries(shape, kind, pruned, expected_false):
  state = groups.init_state(shape, [kind])
  keep = np.ones(groups.group_shape(shape, kind), bool)
  keep[pruned] = False
  state[kind]["keep"] = jnp.asarray(keep)
  mask = np.asarray(groups.mask(shape, state))
  assert not np.any(expected_false(mask))
  assert mask.sum() == mask.size - np.size(expected_false(mask))


def _model(name):
  return models.make(ml_collections.ConfigDict({"name": name, "num_classes": 10}))


def _random_masks(model, params, seed, fraction):
  rng = np.random.default_rng(seed)
  out = {}
  for layer in models.layers(model):
    kernel = params[layer.name]["kernel"]
    kinds = ["column", "row"] if layer.kind == "dense" else ["filter", "shape"]
    state = groups.init_state(kernel.shape, kinds)
    for kind in kinds:
      state[kind]["keep"] = jnp.asarray(rng.random(state[kind]["keep"].shape) > fraction)
    out[layer.name] = np.asarray(groups.mask(kernel.shape, state))
  return out


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_compressed_network_equals_the_masked_one(name):
  model = _model(name)
  x = jax.random.normal(jax.random.key(0), (3, 28, 28, 1), jnp.float64)
  params = jax.tree.map(lambda a: a.astype(jnp.float64) + 0.01,
                        model.init(jax.random.key(1), x)["params"])
  layers = models.layers(model)
  kernel_masks, bias_masks, out_alive, in_alive = structure.unit_masks(
      layers, _random_masks(model, params, 0, 0.1), {l.name: True for l in layers})
  masked = {l.name: {"kernel": params[l.name]["kernel"] * kernel_masks[l.name],
                     "bias": params[l.name]["bias"] * bias_masks[l.name]} for l in layers}
  small_params, widths, input_index, flat_index = structure.compress(layers, masked, out_alive,
                                                                     in_alive)
  small = models.shrunk(model, widths, input_index, flat_index)
  full_width = [np.size(out_alive[l.name]) for l in layers[:-1]]
  assert all(w < f for w, f in zip(widths, full_width))  # really smaller
  np.testing.assert_allclose(small.apply({"params": small_params}, x),
                             model.apply({"params": masked}, x), rtol=1e-12, atol=1e-12)
  arch = structure.architecture_string(layers, out_alive, in_alive)
  numbers = [int(v) for v in arch.split("-")]
  if name == "lenet300":  # inputs, then the hidden widths
    assert numbers == [len(input_index)] + widths
  else:  # filters, filters, dense inputs, dense outputs
    assert numbers == widths[:2] + [len(flat_index)] + widths[2:]


def test_pruned_units_propagate_both_ways():
  model = _model("lenet5")
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
  layers = models.layers(model)
  masks = {l.name: np.ones(params[l.name]["kernel"].shape, bool) for l in layers}
  channels = 50
  masks["Dense_0"][np.arange(800) % channels == 3, :] = False  # every input of channel 3
  masks["Conv_1"][..., 7] = False                             # filter 7
  kernel_masks, bias_masks, out_alive, in_alive = structure.unit_masks(
      layers, masks, {l.name: True for l in layers})
  assert not out_alive["Conv_1"][3] and not bias_masks["Conv_1"][3]
  assert not np.any(kernel_masks["Conv_1"][..., 3])   # channel 3 unused → filter 3 gone
  assert not np.any(kernel_masks["Dense_0"][np.arange(800) % channels == 7, :])  # and back
  assert structure.architecture_string(layers, out_alive, in_alive) == "20-48-768-500"


def test_group_curvature_is_the_sum_of_the_members_diagonal():
  """On the last dense layer under cross-entropy the engine's diagonal is exact
  (test_curvature); the group curvature must then be the sum of the exact entries."""
  rng = np.random.default_rng(0)
  params = {"w1": rng.normal(size=(5, 4)), "w2": rng.normal(size=(4, 3))}
  x, labels = rng.normal(size=(6, 5)), np.array([0, 1, 2, 0, 1, 2])

  def loss(p):
    return nn.softmax_cross_entropy(nn.dense(nn.relu(nn.dense(x, p["w1"])), p["w2"]), labels)

  _, _, curvature = value_grad_curvature(loss, params, mode="ggn")
  exact = np.asarray(exact_diagonal(loss, params, wrt="w2"))
  for kind in ("row", "column", "shape"):
    state = groups.init_state((4, 3), [kind])
    _, group_h = groups.update(jnp.asarray(params["w2"]), curvature["w2"], state, 0.01)
    np.testing.assert_allclose(group_h[kind], groups.group_sum(jnp.asarray(exact), kind),
                               rtol=1e-9)


def _write_tiny_idx(root):
  rng = np.random.default_rng(0)
  for prefix, count in (("train", 64), ("t10k", 32)):
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = (rng.integers(0, 40, (count, 28, 28)) + labels[:, None, None] * 20).astype(np.uint8)
    data.write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte"), images)
    data.write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte"), labels)


def _cli(args):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", "launch.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600, check=False)


def test_lenet5_cli_end_to_end_on_tiny_idx(tmp_path):
  _write_tiny_idx(str(tmp_path))
  workdir = tmp_path / "run"
  result = _cli(["--config=configs/compress_lenet5_mnist.py", f"--workdir={workdir}",
                 f"--config.data.path={tmp_path}", "--config.data.source=idx",
                 "--config.input.batch_size=16", "--config.train.baseline_epochs=1",
                 "--config.compress.rounds=2", "--config.compress.epochs_per_round=1",
                 "--config.compress.curvature_batches=2", "--config.compress.finetune_epochs=1",
                 "--config.train.schedule=cosine", "--config.compress.lambda_ramp=linear",
                 "--config.compress.distill=0.5",
                 # The pipeline, not the rule: a λ that keeps most groups
                 # (0: the convolutions' own λ^l falls back to it).
                 "--config.compress.lambda_=1e-9", "--config.compress.layer_lambda.Conv_0=0",
                 "--config.compress.layer_lambda.Conv_1=0"])
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["architecture_before"] == "20-50-800-500"
  assert summary["params_before"] == 431080 and summary["flops_before"] == 2293000
  assert summary["test_error_after"] == summary["test_error_masked"]
  # The linear ramp: round t of T_max = 2 penalises with λ·t/2.
  assert [r["lambda_factor"] for r in summary["rounds"]] == [0.5, 1.0]
  # Multiply-adds of the compressed LeNet-5 a-b-c-d, counted here: conv 5×5 of
  # 1 → a channels on 24×24 outputs, a → b on 8×8, dense c → d and d → 10.
  a, b, c, d = (int(x) for x in summary["architecture_after"].split("-"))
  assert summary["flops_after"] == 576 * 25 * a + 64 * 25 * a * b + c * d + 10 * d
  assert summary["params_after"] <= summary["params_before"]
  for name in ("layers.md", "sparsity.png", "compressed_model.json"):
    assert (workdir / name).exists()
  assert (workdir / "compressed").is_dir()


@pytest.mark.parametrize("override, words", [
    ("--config.compress.groups.Dense_0=diagonal",
     "config.compress.groups.Dense_0: 'diagonal' is not a dense group"),
    ("--config.compress.groups.Conv_0=row", "config.compress.groups.Conv_0: 'row' is not a conv"),
    ("--config.train.schedule=linear", "config.train.schedule: expected one of"),
    ("--config.compress.lambda_ramp=cosine", "config.compress.lambda_ramp: expected one of"),
    ("--config.compress.distill=1.5", "config.compress.distill: expected a weight in [0, 1)"),
    ("--config.compress.baseline_checkpoint=/nonexistent/baseline",
     "config.compress.baseline_checkpoint: no checkpoint directory /nonexistent/baseline"),
])
def test_bad_group_names_are_one_line(override, words, tmp_path):
  result = _cli(["--config=configs/compress_lenet5_mnist.py", f"--workdir={tmp_path / 'w'}",
                 override])
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
  assert not (tmp_path / "w").exists()


def test_cosine_factor_runs_from_one_to_zero():
  from bayesnas_jax.compress import run
  total = 8
  factors = [run.lr_scale(step, total) for step in range(total + 1)]
  assert factors[0] == 1.0 and abs(factors[4] - 0.5) < 1e-12 and abs(factors[-1]) < 1e-12
  assert all(a > b for a, b in zip(factors, factors[1:]))


def test_distillation_gradient_is_the_softened_difference():
  """d/dz of T²·CE(softmax(t/T), softmax(z/T)) averaged over B examples is
  T·(softmax(z/T) − softmax(t/T))/B (hand-derived), zero where student = teacher."""
  from bayesnas_jax.compress import run
  z = jnp.asarray([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], jnp.float64)
  t = jnp.asarray([[2.0, 0.0, -1.0], [0.5, 1.0, 1.0]], jnp.float64)
  for temperature in (1.0, 4.0):
    grad = jax.grad(run.distillation_loss)(z, t, temperature)
    expected = temperature * (jax.nn.softmax(z / temperature)
                              - jax.nn.softmax(t / temperature)) / 2
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jax.grad(run.distillation_loss)(t, t, temperature), 0,
                               atol=1e-14)


def test_lambda_ramp_factors():
  from bayesnas_jax.compress import run
  assert [run.ramp_factor("linear", t, 4) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
  assert [run.ramp_factor("constant", t, 4) for t in range(4)] == [1.0] * 4


def test_evidence_rule_keeps_what_the_data_support():
  """Prune iff Σ_m H_m(H_m w_m² − λ) ≤ 0 (hand-computed); the thesis' entropy
  rule on the same groups prunes by γ = ‖W_g‖/ω_g ≤ 1/(2πe) instead."""
  w = jnp.asarray([[0.2, 0.05, 0.3], [0.2, 0.05, 0.0]])   # columns are the groups
  h = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 1.0, 1e-9]])
  state = groups.init_state(w.shape, ["column"])
  kept, _ = groups.update(w, h, state, 0.01, rule="evidence")
  # column 0: 2·(0.04 − 0.01) > 0 kept; column 1: 2·(0.0025 − 0.01) < 0 pruned;
  # column 2: its only seen member (H = 1e-9) is ≈ 0 and the other unseen: pruned.
  np.testing.assert_array_equal(kept["column"]["keep"][0], [True, False, False])
  entropy, _ = groups.update(w, h, state, 0.01, rule="entropy")
  # By hand from γ(0) = 1: ω_g = sqrt(Σ_m H_m/(λ + H_m)), γ_g = ‖w_g‖/ω_g.
  # column 0: ‖w‖ = 0.2828, ω = sqrt(2/1.01) = 1.4072: γ = 0.201 > 1/(2πe) kept;
  # column 1: ‖w‖ = 0.0707: γ = 0.0502 < 0.0585 pruned;
  # column 2: ‖w‖ = 0.3, ω = sqrt(1e-9/0.01) = 3.16e-4: γ ≈ 949, kept (the
  # evidence rule prunes it: the data do not see it).
  np.testing.assert_allclose(np.asarray(entropy["column"]["gamma"][0]),
                             [0.2 * np.sqrt(2) / np.sqrt(2 / 1.01),
                              0.05 * np.sqrt(2) / np.sqrt(2 / 1.01),
                              0.3 / np.sqrt(1e-9 / (0.01 + 1e-9))], rtol=1e-4)
  np.testing.assert_array_equal(entropy["column"]["keep"][0], [True, False, True])
  with pytest.raises(ValueError, match="prune rule"):
    groups.update(w, h, state, 0.01, rule="magnitude")


def test_compress_compare_prunes_the_baselines_to_the_same_architecture(tmp_path):
  _write_tiny_idx(str(tmp_path))
  workdir = tmp_path / "compare"
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  result = subprocess.run(
      [sys.executable, "-m", "launch.compress_compare",
       "--config=configs/compress_lenet300_mnist.py", f"--workdir={workdir}",
       f"--config.data.path={tmp_path}", "--config.data.source=idx",
       "--config.input.batch_size=16", "--config.train.baseline_epochs=1",
       "--config.compress.rounds=1", "--config.compress.epochs_per_round=1",
       "--config.compress.curvature_batches=2", "--config.compress.finetune_epochs=1",
       "--config.compress.lambda_=1e-8"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads((workdir / "compare.json").read_text())
  assert set(rows) == {"bayes", "magnitude", "group_lasso"}
  for method in ("magnitude", "group_lasso"):
    assert rows[method]["architecture_after"] == rows["bayes"]["architecture_after"]
    assert rows[method]["flops_after"] == rows["bayes"]["flops_after"]
  assert "| magnitude |" in result.stdout and "| bayes |" in result.stdout
  # Both baselines restored the Bayesian run's dense baseline instead of training one.
  assert result.stderr.count(f"restored from {workdir / 'bayes' / 'baseline'}") == 2
  assert "baseline: epoch" not in result.stderr.split("== magnitude")[1]


def test_a_restored_baseline_continues_exactly(tmp_path):
  """A run from another run's saved dense baseline (weights, momentum, epoch count)
  ends with the same compressed weights as the run that trained it."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  _write_tiny_idx(str(tmp_path))
  common = ["--config=configs/compress_lenet300_mnist.py", f"--config.data.path={tmp_path}",
            "--config.data.source=idx", "--config.input.batch_size=16",
            "--config.train.baseline_epochs=2", "--config.compress.rounds=2",
            "--config.compress.epochs_per_round=1", "--config.compress.curvature_batches=2",
            "--config.compress.finetune_epochs=1", "--config.compress.lambda_=1e-8"]
  first = _cli(common + [f"--workdir={tmp_path / 'a'}"])
  assert first.returncode == 0, first.stderr[-3000:]
  # baseline_epochs is the checkpoint's (2), whatever the config says.
  second = _cli(common + [f"--workdir={tmp_path / 'b'}", "--config.train.baseline_epochs=5",
                          f"--config.compress.baseline_checkpoint={tmp_path / 'a' / 'baseline'}"])
  assert second.returncode == 0, second.stderr[-3000:]
  assert "baseline: epoch" not in second.stderr
  a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in "ab")
  for key in ("test_error_before", "architecture_after", "test_error_after", "rounds"):
    assert a[key] == b[key], key
  assert a["baseline_checkpoint"] is None
  assert b["baseline_checkpoint"] == str(tmp_path / "a" / "baseline")
  weights = [ocp.StandardCheckpointer().restore(str(tmp_path / d / "compressed")) for d in "ab"]
  leaves = [jax.tree_util.tree_leaves(w) for w in weights]
  assert len(leaves[0]) == len(leaves[1]) > 0
  for x, y in zip(*leaves):
    np.testing.assert_array_equal(x, y)


def test_layer_lambdas_default_and_override():
  from configs import compress_lenet5_mnist  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.compress import run  # pylint: disable=import-outside-toplevel
  config = compress_lenet5_mnist.get_config()
  kinds = {"Conv_0": ("filter",), "Dense_0": ("row",)}
  config.compress.layer_lambda.Conv_0 = 1e-5
  assert run.layer_lambdas(config, kinds) == {"Conv_0": 1e-5, "Dense_0": config.compress.lambda_}
  config.compress.method = "group_lasso"
  assert set(run.layer_lambdas(config, kinds).values()) == {config.compress.group_lasso_lambda}
  config.compress.method = "bayes"
  config.compress.layer_lambda.Conv_0 = -1.0
  with pytest.raises(ValueError, match="config.compress.layer_lambda.Conv_0"):
    run.layer_lambdas(config, kinds)


def _resnet_case():
  """A two-stage ResNet (identity and projection blocks) in float64 with
  non-trivial batch-norm parameters and running statistics."""
  from bayesnas_jax.compress import resnet  # pylint: disable=import-outside-toplevel
  model = resnet.ResNet18(stage_widths=(4, 6), num_classes=3)
  x = jax.random.normal(jax.random.key(0), (5, 8, 8, 3), jnp.float64)
  variables = model.init(jax.random.key(1), x)
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  leaves = [a.astype(jnp.float64) + 0.3 * jax.random.uniform(k, a.shape, jnp.float64)
            for a, k in zip(leaves, keys)]
  return model, x, jax.tree.unflatten(treedef, leaves)


def test_resnet_compressed_equals_masked_and_pruned_blocks_disappear():
  model, x, variables = _resnet_case()
  topology = models.topology(model)
  params = variables["params"]
  kernel_masks = {l.name: np.ones(params[l.name]["kernel"].shape, bool) for l in topology.layers}
  kernel_masks["s1b0_conv1"][...] = False       # identity block: every conv1 filter
  kernel_masks["s2b0_conv2"][...] = False       # projection block: every conv2 filter
  kernel_masks["s1b1_conv1"][..., 1] = False    # one filter
  kernel_masks["s1b1_conv2"][:, :, 2, :] = False  # conv1 filter 2 no longer read
  kernel_masks["s2b1_conv2"][..., [0, 5]] = False
  kernel_masks["s2b1_conv1"][1, 1, 3, :] = False  # a shape group
  kernel_masks["conv0"][..., 1] = False
  kernel_masks["fc"][[0, 4], :] = False
  masks, alive = topology.param_masks(kernel_masks, params)
  # The unread conv1 filter goes with its batch-norm entries; the projection
  # block's conv1 goes with its conv2; the stem filter's BN entries go.
  assert not masks["s1b1_conv1"]["kernel"][..., 2].any()
  np.testing.assert_array_equal(masks["s1b1_bn1"]["scale"], [True, False, False, True])
  assert not masks["s2b0_conv1"]["kernel"].any() and not masks["s2b0_bn2"]["bias"].any()
  assert not masks["bn0"]["bias"][1] and masks["bn0"]["bias"].sum() == 3
  assert topology.removed(alive) == ("s1b0", "s2b0")
  assert topology.architecture(alive) == "3-0/0-2/4-0/0-6/4-4"
  assert topology.parse("3-0/0-2/4-0/0-6/4-4")[("s1b1_conv1", "out")] == 2
  with pytest.raises(ValueError, match="config.compress.target_architecture"):
    topology.parse("3-2/4-4")
  full = {name: masks.get(name, jax.tree.map(np.ones_like, entry))
          for name, entry in params.items()}
  masked = jax.tree.map(lambda p, m: p * m, params, full)
  state = {"batch_stats": variables["batch_stats"]}
  small, small_params, small_state, description = topology.compress(masked, state, alive)
  assert description["removed"] == ["s1b0", "s2b0"]
  assert "s1b0_conv1" not in small_params and "s2b0_sc" in small_params
  assert small_params["s1b1_conv2"]["kernel"].shape == (3, 3, 2, 4)
  count = lambda tree: sum(np.size(a) for a in jax.tree.leaves(tree))  # noqa: E731
  assert count(small_params) < count(masked)
  for train in (False, True):  # running averages, and batch statistics
    np.testing.assert_allclose(
        small.apply({"params": small_params, **small_state}, x, train=train),
        model.apply({"params": masked, **state}, x, train=train), rtol=1e-10, atol=1e-10)


def test_resnet_config_names_every_prunable_layer():
  from configs import compress_resnet18_cifar10  # pylint: disable=import-outside-toplevel
  config = compress_resnet18_cifar10.get_config("cpu")
  topology = models.topology(models.make(config.model))
  convs = {l.name for l in topology.layers if not l.name.endswith("_sc")}
  assert set(config.compress.groups) == convs and len(convs) == 18
  assert config.compress.groups.fc == "row"


def test_magnitude_selection_keeps_its_counts_after_a_flatten():
  """A dense layer's input rows are chosen among those that read a kept filter,
  so after the structural consequences the kept counts are still the asked ones
  (here the largest dense rows read the smallest filters)."""
  from bayesnas_jax.compress import structure  # pylint: disable=import-outside-toplevel
  layers = [structure.Layer("Conv_0", "conv", 1), structure.Layer("Dense_0", "dense", 2),
            structure.Layer("Dense_1", "dense", 1)]
  conv = np.zeros((1, 1, 1, 4))
  conv[..., :] = [4.0, 3.0, 2.0, 1.0]            # filters 0 and 1 are kept
  dense = np.ones((8, 5)) * np.asarray([1, 1, 9, 9, 1, 1, 9, 9])[:, None]  # row p·4 + c
  dense[0] = 2.0                                  # channel 0, position 0: the best live row
  out = np.ones((5, 3))
  counts = {("Conv_0", "out"): 2, ("Dense_0", "in"): 3, ("Dense_0", "out"): 5}
  masks = structure.select_by_norm(layers, {"Conv_0": conv, "Dense_0": dense,
                                            "Dense_1": out}, counts)
  rows = np.flatnonzero(masks["Dense_0"].any(axis=1))
  assert len(rows) == 3 and set(rows % 4) <= {0, 1} and 0 in rows
  _, _, _, in_alive = structure.unit_masks(layers, masks, {})
  assert int(in_alive["Dense_0"].sum()) == 3


def test_non_finite_loss_stops_compression_and_writes_nothing(tmp_path):
  _write_tiny_idx(str(tmp_path))
  workdir = tmp_path / "run"
  result = _cli(["--config=configs/compress_lenet300_mnist.py", f"--workdir={workdir}",
                 f"--config.data.path={tmp_path}", "--config.data.source=idx",
                 "--config.input.batch_size=16", "--config.train.baseline_epochs=1",
                 "--config.train.learning_rate=1e9"])
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: ") and (
      "the loss turned non-finite" in lines[0]), result.stderr[-3000:]
  assert not (workdir / "summary.json").exists()
