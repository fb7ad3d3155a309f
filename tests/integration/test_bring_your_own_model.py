"""docs/bring_your_own_model.md: its three examples (a SearchSpace, linen layers,
NNX layers) run as printed, and what they compute holds up."""
import os

import jax
import numpy as np
import pytest
from flax import nnx

from bayesnas_jax import nnx as bnx
from tests.tests_support import ROOT, markdown_python_blocks

# flax.nnx.BatchNorm keeps float32 averages; a float64 input updates them with a
# float64 value (both libraries alike), which JAX warns about.
pytestmark = pytest.mark.filterwarnings("ignore:scatter inputs have incompatible types")

GUIDE = os.path.join(ROOT, "docs", "bring_your_own_model.md")


def _run(section):
  (block,) = markdown_python_blocks(GUIDE, section)
  # Not "__main__": the SearchSpace example's whole search is left out.
  namespace = {"__name__": "bring_your_own_model"}
  exec(compile(block, f"{GUIDE}: {section}", "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def test_search_space_example_builds_the_space_the_search_would_run():
  namespace = _run("A SearchSpace")
  space, arch = namespace["space"], namespace["arch"]
  assert namespace["logits"].shape == (2, namespace["config"].space.num_classes)
  assert set(arch) == set(space.cells)
  assert all(np.all(np.asarray(w) == 1) for w in jax.tree.leaves(arch))  # Algorithm 1


def test_linen_example_takes_one_step_with_the_penalty():
  namespace = _run("Linen layers")
  grads, lambda_w = namespace["grads"], namespace["lambda_w"]
  # From w = 1 and ω = 1 (nothing pruned yet) plain SGD on gradient + λ_w·ω·sign(w).
  for w, g in zip(jax.tree.leaves(namespace["variables"]["arch"]),
                  jax.tree.leaves(grads["arch"])):
    np.testing.assert_allclose(w, 1 - 0.05 * (g + lambda_w), rtol=1e-6)
  assert all(np.all(np.asarray(h) > 0) for h in jax.tree.leaves(namespace["curvature"]["arch"]))
  assert int(namespace["state"].rounds) == 1


def test_nnx_example_searches_and_prints_the_kept_ops(capsys):
  namespace = _run("NNX layers")
  model, state, best = namespace["model"], namespace["state"], namespace["best"]
  assert int(state.rounds) == 3 and int(namespace["optimizer"].step[...]) == 24
  arch = nnx.to_pure_dict(nnx.state(model, bnx.ArchParam))
  for w, keep, choice in zip(jax.tree.leaves(arch), jax.tree.leaves(state.keep),
                             jax.tree.leaves(best)):
    assert w.shape == (3,)
    assert np.all(np.asarray(w)[~np.asarray(keep)] == 0)  # zero_pruned in the chain
    assert np.all(np.asarray(w) != 1)  # the optimiser moved the scalars
    assert np.asarray(keep)[int(choice[0])]
  printed = capsys.readouterr().out
  assert "kept ops:" in printed and "blocks/0/w" in printed and "blocks/1/w" in printed
  assert all(np.all(np.asarray(h) > 0) for h in jax.tree.leaves(namespace["H"]))
