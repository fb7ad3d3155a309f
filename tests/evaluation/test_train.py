"""Training derived genotypes (`bayesnas_jax.evaluation.train`) on tiny settings:
genotype files in both formats, a node with three inputs that learns, the DARTS V2
counts and summary mode, resume after interruption (also with the grain
pipeline), and a non-finite loss."""
import json
import os

import jax
import numpy as np
import optax
import pytest
from PIL import Image

from bayesnas_jax.checkpoints import Checkpointer
from bayesnas_jax.evaluation import counting, darts_network, train
from configs import darts_cifar10_eval, imagenet_eval
from tests.evaluation.genotype_support import EXTRA_EDGE, MODEL, THREE_INPUTS, TWO_INPUTS

LITERAL = ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('max_pool_3x3', 0), "
           "('dil_conv_3x3', 2)], normal_concat=range(2, 4), reduce=[('avg_pool_3x3', 0), "
           "('skip_connect', 1), ('max_pool_3x3', 1), ('skip_connect', 2)], "
           "reduce_concat=[2, 3])")
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
            "reduce_concat=[2, 3, 4, 5])")


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
  assert int(optax.tree_utils.tree_get(state.opt_state, "count")) == 1
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
                                train.make_steps(config, genotype, 6)[0]).params
  trained = final_params(config, workdir).params
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
