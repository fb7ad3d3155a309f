"""Evaluation network, counting and training of derived genotypes, on tiny settings:
genotype files in both formats, nodes with three inputs, parameter and MAC counts
against independent counts, train/eval differences (BN statistics, drop-path,
auxiliary head), summary mode, and resume after interruption."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from bayesnas_jax.checkpoints import Checkpointer
from bayesnas_jax.evaluation import counting, darts_network, train
from configs import darts_cifar10_eval, imagenet_eval

LITERAL = ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('max_pool_3x3', 0), "
           "('dil_conv_3x3', 2)], normal_concat=range(2, 4), reduce=[('avg_pool_3x3', 0), "
           "('skip_connect', 1), ('max_pool_3x3', 1), ('skip_connect', 2)], "
           "reduce_concat=[2, 3])")
TWO_INPUTS = {
    "normal": [["sep_conv_3x3", 0, 2], ["skip_connect", 1, 2], ["max_pool_3x3", 0, 3],
               ["dil_conv_3x3", 2, 3]], "normal_concat": [2, 3],
    "reduce": [["avg_pool_3x3", 0, 2], ["skip_connect", 1, 2], ["max_pool_3x3", 1, 3],
               ["skip_connect", 2, 3]], "reduce_concat": [2, 3]}
# Node 3 of the normal cell gets a third input: one more sep_conv_3x3 edge.
EXTRA_EDGE = ["sep_conv_3x3", 1, 3]
THREE_INPUTS = {**TWO_INPUTS, "normal": TWO_INPUTS["normal"] + [EXTRA_EDGE]}
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
            "reduce_concat=[2, 3, 4, 5])")
MODEL = {"stem": "cifar", "channels": 4, "layers": 3, "num_classes": 3, "image_size": 8,
         "stem_multiplier": 3, "auxiliary": True}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  root = tmp_path_factory.mktemp("genotypes")
  paths = {"literal": root / "genotype_darts.txt", "json": root / "genotype.json",
           "darts_v2": root / "darts_v2.txt"}
  paths["literal"].write_text(LITERAL + "\n")
  paths["json"].write_text(json.dumps(THREE_INPUTS))
  paths["darts_v2"].write_text(DARTS_V2)
  return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  """A 3-class image folder of 8×8 PNGs: 48 train and 9 test images."""
  root = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(0)
  for split, count in (("train", 16), ("test", 3)):
    for label, name in enumerate(("ant", "bee", "cat")):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(count):
        pixels = rng.integers(0, 60, (8, 8, 3)) + 60 * label
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
  return str(root)


def tiny_config(genotype, data_path, **extra):
  config = darts_cifar10_eval.get_config(genotype)
  config.data.source = "image_folder"
  config.data.path = data_path
  config.input.batch_size = 8
  config.input.cutout_length = 4
  for key, value in MODEL.items():
    config.model[key] = value
  config.train.epochs = 2
  config.log_every_steps = 2
  config.checkpoint_every_steps = 4
  for field, value in extra.items():
    node = config
    *parents, leaf = field.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def quiet(_):
  pass


def final_params(config, workdir):
  genotype = train.load_genotype(config)
  optimizer = train.make_steps(config, genotype, 6)[0]  # the cached one: no new trace
  like = train.initial_state(config, genotype, jax.random.PRNGKey(0), optimizer)
  checkpointer = Checkpointer(workdir)
  state, _ = checkpointer.restore(like)
  checkpointer.close()
  return state


@pytest.fixture(scope="module")
def uninterrupted(files, tiny_data, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("full"))
  summary = train.train_and_evaluate(tiny_config(files["json"], tiny_data), workdir, log=quiet)
  return workdir, summary


@pytest.fixture(scope="module")
def forward():
  """Jitted train- and eval-mode forward passes of THREE_INPUTS at MODEL."""
  genotype = darts_network.canonical(THREE_INPUTS)

  def run(params, stats, images, key, drop_prob, train_mode):
    return darts_network.apply(params, stats, images, genotype, MODEL, train=train_mode,
                               key=key, drop_path_prob=drop_prob)

  params, stats = jax.jit(lambda key: darts_network.init(key, genotype, MODEL))(
      jax.random.PRNGKey(0))
  images = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 3), jnp.float32)
  return jax.jit(run, static_argnums=5), params, stats, images


def test_genotype_files_in_both_formats(files, tiny_data, tmp_path):
  literal = train.load_genotype(tiny_config(files["literal"], tiny_data))
  assert literal == darts_network.canonical(TWO_INPUTS)
  three = train.load_genotype(tiny_config(files["json"], tiny_data))
  assert sum(1 for _, _, target in three[0][1] if target == 3) == 3
  # One training step from the DARTS literal: it builds, steps and checkpoints.
  workdir = str(tmp_path / "literal")
  with pytest.raises(train.Interrupted):
    train.train_and_evaluate(tiny_config(files["literal"], tiny_data, stop_after_steps=1),
                             workdir, log=quiet)
  state = final_params(tiny_config(files["literal"], tiny_data), workdir)
  assert int(optax.tree_utils.tree_get(state["opt_state"], "count")) == 1
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(state))


def test_bad_genotypes_give_one_line_errors(files, tiny_data, tmp_path):
  with pytest.raises(ValueError, match="config.genotype"):
    train.validate(tiny_config("", tiny_data))
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({**TWO_INPUTS, "normal_concat": [2, 4]}))
  with pytest.raises(ValueError, match="normal_concat"):
    train.load_genotype(tiny_config(str(bad), tiny_data))
  bad.write_text(json.dumps({**TWO_INPUTS, "reduce": [["conv_7x7", 0, 2]]}))
  with pytest.raises(ValueError, match="conv_7x7"):
    train.load_genotype(tiny_config(str(bad), tiny_data))


def _edge_weights(c):
  """2·(k·k·C + C·C) weights and two BNs (scale, bias) of a sep_conv_3x3 at C."""
  return 2 * (3 * 3 * c + c * c) + 2 * 2 * c


def test_parameter_count_grows_by_exactly_the_added_edge():
  model = {**MODEL, "layers": 5}  # normal cells at C = 4, 8, 16
  counts = {}
  for name, genotype in (("two", TWO_INPUTS), ("three", THREE_INPUTS)):
    params, _ = counting.abstract_network(genotype, model)
    counts[name] = counting.parameter_count(params)
  normal_channels = [c for reduction, c in darts_network.cell_plan(model) if not reduction]
  assert normal_channels == [4, 8, 16]
  assert counts["three"] - counts["two"] == sum(_edge_weights(c) for c in normal_channels)
  swapped = {**TWO_INPUTS, "reduce": [["sep_conv_5x5", 0, 2]] + TWO_INPUTS["reduce"][1:]}
  params, _ = counting.abstract_network(swapped, model)
  assert counting.parameter_count(params) != counts["two"]


def test_auxiliary_head_is_excluded_from_the_count():
  params, _ = counting.abstract_network(TWO_INPUTS, MODEL)
  with_aux = counting.parameter_count(params, exclude_auxiliary=False)
  # Independent count of the head: 1×1 conv to 128 + BN, a conv over the 1×1 pooled
  # map to 768 + BN, linear to 3 classes; it reads cell 2 (reduce, C = 16, 2 nodes).
  c_in = 2 * 16
  head = c_in * 128 + 2 * 128 + 128 * 768 + 2 * 768 + 768 * 3 + 3
  assert with_aux - counting.parameter_count(params) == head


def test_macs_grow_by_exactly_the_added_edge():
  model = {**MODEL, "layers": 5, "image_size": 16}
  macs = {name: counting.flops_per_image(g, model)
          for name, g in (("two", TWO_INPUTS), ("three", THREE_INPUTS))}
  # Normal cells 0, 2, 4 run at 16², 8², 4² with C = 4, 8, 16; stride 1.
  expected = sum(size * size * 2 * (9 * c + c * c) for size, c in ((16, 4), (8, 8), (4, 16)))
  assert macs["three"] - macs["two"] == expected


def test_darts_v2_counts_match_published_figures(files, tiny_data):
  """DARTS V2 at C = 36, 20 cells: DARTS' training log reports param size 3.349342MB
  and other counters 528M multiply-adds on CIFAR-10; both are computed here."""
  config = darts_cifar10_eval.get_config(files["darts_v2"])
  config.mode = "summary"
  train.validate(config)
  summary = train.summarize(config)
  assert summary["params"] == 3349342
  assert round(summary["flops_M"]) == 528
  imagenet = imagenet_eval.get_config(files["darts_v2"])
  imagenet.model.image_size = 32  # only the stem and strides matter for shapes
  params, _ = counting.abstract_network(darts_network.canonical(THREE_INPUTS), imagenet.model)
  assert "stem0" in params and counting.parameter_count(params) > 0


def test_summary_mode_of_a_tiny_config(files, tiny_data):
  config = tiny_config(files["json"], tiny_data, mode="summary")
  summary = train.summarize(config)
  params, _ = counting.abstract_network(THREE_INPUTS, config.model.to_dict())
  assert summary["params_M"] == counting.parameter_count(params) / 1e6
  assert summary["flops_M"] > 0 and summary["flops"] == round(summary["flops_M"] * 1e6)


def test_eval_mode_has_no_drop_path_and_no_aux(forward):
  run, params, stats, images = forward
  key1, key2 = jax.random.PRNGKey(3), jax.random.PRNGKey(4)
  logits_a, aux_a, stats_a = run(params, stats, images, key1, 0.5, False)
  logits_b, aux_b, _ = run(params, stats, images, key2, 0.0, False)
  assert aux_a is None and aux_b is None
  np.testing.assert_array_equal(logits_a, logits_b)
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(
      lambda a, b: bool(jnp.array_equal(a, b)), stats_a, stats))
  # In training, drop-path draws from the key, and the auxiliary head is on.
  train_a, aux, _ = run(params, stats, images, key1, 0.5, True)
  train_b, _, _ = run(params, stats, images, key2, 0.5, True)
  train_c, _, _ = run(params, stats, images, key2, 0.0, True)
  train_d, _, _ = run(params, stats, images, key1, 0.0, True)
  assert aux.shape == (6, 3)
  assert not np.allclose(train_a, train_b)
  np.testing.assert_array_equal(train_c, train_d)


def test_running_statistics_are_updated_in_training_and_used_at_eval(forward):
  run, params, stats, images = forward
  _, _, new_stats = run(params, stats, images, None, 0.0, True)
  # Stem BN: running mean 0 → 0.1·batch mean of the stem conv output.
  conv = jax.lax.conv_general_dilated(images, params["stem"]["w"], (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(new_stats["stem"]["bn"]["mean"],
                             0.1 * jnp.mean(conv, axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  # Eval mode uses the running statistics: an example's logits do not depend on
  # the rest of the batch, and they change with the statistics.
  full, _, _ = run(params, new_stats, images, None, 0.0, False)
  part, _, _ = run(params, new_stats, images[:2], None, 0.0, False)
  np.testing.assert_allclose(full[:2], part, rtol=1e-4, atol=1e-5)
  before, _, _ = run(params, stats, images, None, 0.0, False)
  assert not np.allclose(before, full)
  train_full, _, _ = run(params, stats, images, None, 0.0, True)
  train_part, _, _ = run(params, stats, images[:2], None, 0.0, True)
  assert not np.allclose(train_full[:2], train_part)


def test_training_outputs_and_a_three_input_node_learns(uninterrupted, files, tiny_data):
  workdir, summary = uninterrupted
  assert summary["epochs"] == 2 and summary["steps"] == 12
  assert summary["params_M"] > 0 and summary["flops_M"] > 0
  assert 0 <= summary["final_test_accuracy"] <= summary["best_test_accuracy"] <= 1
  assert summary["test_examples"] == 9
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    assert EXTRA_EDGE in json.load(f)["genotype"]["normal"]
  records = [json.loads(line) for line in
             open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8")]
  epochs = [r for r in records if r["phase"] == "epoch"]
  assert [r["epoch"] for r in epochs] == [1, 2]
  assert epochs[0]["drop_path_prob"] == 0 and epochs[1]["drop_path_prob"] == pytest.approx(0.1)
  assert epochs[1]["learning_rate"] == pytest.approx(0.025 * 0.5 * (1 + np.cos(np.pi / 2)))
  assert {"train", "epoch"} <= {r["phase"] for r in records}
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(os.path.join(workdir, "tensorboard")))
  # The extra (third) input edge of node 3 was trained in every normal cell.
  config = tiny_config(files["json"], tiny_data)
  genotype = train.load_genotype(config)
  initial = train.initial_state(config, genotype,
                                jax.random.fold_in(jax.random.PRNGKey(config.seed), 0),
                                train.make_steps(config, genotype, 6)[0])["params"]
  trained = final_params(config, workdir)["params"]
  extra = genotype[0][1].index(tuple(EXTRA_EDGE))
  for before, after in zip(jax.tree_util.tree_leaves(initial["cells"][0]["edges"][extra]),
                           jax.tree_util.tree_leaves(trained["cells"][0]["edges"][extra])):
    assert np.all(np.isfinite(after)) and not np.allclose(before, after)


def test_resume_after_interruption_equals_uninterrupted(uninterrupted, files, tiny_data,
                                                        tmp_path):
  workdir = str(tmp_path / "resumed")
  with pytest.raises(train.Interrupted):  # inside epoch 1, after a mid-epoch checkpoint
    train.train_and_evaluate(tiny_config(files["json"], tiny_data, stop_after_steps=5),
                             workdir, log=quiet)
  with pytest.raises(train.Interrupted):  # across the epoch boundary
    train.train_and_evaluate(tiny_config(files["json"], tiny_data, stop_after_steps=3),
                             workdir, log=quiet)
  summary = train.train_and_evaluate(tiny_config(files["json"], tiny_data), workdir,
                                     log=quiet)
  reference_dir, reference = uninterrupted
  for field in ("final_test_accuracy", "final_test_loss", "best_test_accuracy", "steps"):
    assert summary[field] == reference[field]
  config = tiny_config(files["json"], tiny_data)
  resumed, expected = final_params(config, workdir), final_params(config, reference_dir)
  for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_array_equal(a, b)


def test_grain_pipeline_resumes_exactly(files, tiny_data, tmp_path):
  """input.pipeline = "grain": the loader's state is in the checkpoint, so two
  interruptions (mid-epoch and across the epoch boundary) end where an uninterrupted
  run ends, to the bit."""
  grain = {"input.pipeline": "grain", "input.crop_padding": 0}
  straight = str(tmp_path / "straight")
  reference = train.train_and_evaluate(tiny_config(files["json"], tiny_data, **grain),
                                       straight, log=quiet)
  assert reference["test_examples"] == 9 and reference["steps"] == 12
  workdir = str(tmp_path / "resumed")
  for stop in (5, 3):
    with pytest.raises(train.Interrupted):
      train.train_and_evaluate(tiny_config(files["json"], tiny_data, stop_after_steps=stop,
                                           **grain), workdir, log=quiet)
  summary = train.train_and_evaluate(tiny_config(files["json"], tiny_data, **grain), workdir,
                                     log=quiet)
  for field in ("final_test_accuracy", "final_test_loss", "steps"):
    assert summary[field] == reference[field]
  config = tiny_config(files["json"], tiny_data, **grain)
  for a, b in zip(jax.tree_util.tree_leaves(final_params(config, workdir)),
                  jax.tree_util.tree_leaves(final_params(config, straight))):
    np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_training_and_writes_nothing(files, tiny_data, tmp_path):
  """At a learning rate of 1e9 the loss turns non-finite: one error naming the
  epoch and step, and no summary."""
  from bayesnas_jax.metrics import NonFiniteError  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "nan"
  config = tiny_config(files["json"], tiny_data, **{"train.learning_rate": 1e9})
  with pytest.raises(NonFiniteError, match=r"^epoch \d/2: the loss turned non-finite .* "
                                           r"at step \d+; stopped"):
    train.train_and_evaluate(config, str(workdir), log=quiet)
  assert not (workdir / "summary.json").exists()
