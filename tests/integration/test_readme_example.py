"""The README's code blocks under "Using the pieces in your own JAX code" run as
printed, and what they compute holds up."""
import os

import jax
import numpy as np

from tests.tests_support import ROOT, markdown_python_blocks


def _python_blocks():
  return markdown_python_blocks(os.path.join(ROOT, "README.md"),
                                "Using the pieces in your own JAX code")


def test_readme_has_the_two_examples():
  assert len(_python_blocks()) == 2


def test_curvature_snippet_runs_and_matches_grad():
  namespace = {}
  exec(compile(_python_blocks()[0], "README-snippet", "exec"), namespace)  # pylint: disable=exec-used
  expected = jax.grad(namespace["loss_fn"])(namespace["params"], namespace["x"], namespace["y"])
  for got, want in zip(jax.tree.leaves(namespace["grads"]), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert float(namespace["curvature"]["arch"]) > 0
  assert np.isfinite(float(namespace["s"]))


def test_flax_search_example_runs(capsys):
  namespace = {}
  exec(compile(_python_blocks()[1], "README-example", "exec"), namespace)  # pylint: disable=exec-used
  state, arch, best = namespace["state"], namespace["arch"], namespace["best"]
  assert int(state.rounds) == 3
  # Pruned scalars are 0 in the network, kept ones are not, and the choice is a kept op.
  for w, keep, choice in zip(jax.tree.leaves(arch), jax.tree.leaves(state.keep),
                             jax.tree.leaves(best)):
    assert w.shape == (3,)
    assert np.all(np.asarray(w)[~np.asarray(keep)] == 0)
    assert np.asarray(keep)[int(choice[0])]
  printed = capsys.readouterr().out
  assert "MixedOp_0/w" in printed and "MixedOp_1/w" in printed
  # The example's curvature is that of the data loss alone: it is positive for
  # every op scalar of a trained network.
  assert all(np.all(np.asarray(h) > 0) for h in jax.tree.leaves(namespace["H"]))
