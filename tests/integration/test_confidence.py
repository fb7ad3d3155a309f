"""Confident decisions do not flip under a rounding-sized perturbation.

The same tiny NB201 search runs twice in one process, the second time with
every initial weight moved by one ulp (what another machine's float rounding
does to a run). Every edge whose margin is outside the curvature's noise
(`search.confidence_z` standard errors) in the first run must derive the same
op in the second; the margins themselves must be reproduced closely."""
import jax
import numpy as np
import pytest

from configs import nb201_cifar10_search
from bayesnas_jax import spaces
from bayesnas_jax.search import run
from tests.tests_support import make_image_folder


@pytest.fixture(scope="module")
def two_searches(tmp_path_factory):
  root = tmp_path_factory.mktemp("confidence")
  config = nb201_cifar10_search.get_config("tiny")
  config.data.path = make_image_folder(root / "images", train_per_class=48,
                                       separable=False)
  config.tensorboard = False
  config.input.batch_size = 16
  config.search.curvature_batches = 4
  config.search.warmup_fraction = 0.25
  space = spaces.make(config.space)

  def one_ulp(w):
    w = np.asarray(w)
    return np.nextafter(w, np.inf).astype(w.dtype)

  perturbed = space._replace(init_weights=lambda key, shape: jax.tree_util.tree_map(
      one_ulp, space.init_weights(key, shape)))
  summaries = [run.run_search(config, str(root / name), log=lambda *_: None, space=s)
               for name, s in (("a", space), ("b", perturbed))]
  return config, summaries


def test_confident_decisions_survive_a_one_ulp_perturbation(two_searches):
  config, (a, b) = two_searches
  z = config.search.confidence_z
  confident = [(x, y) for x, y in zip(a["decisions"], b["decisions"])
               if x["margin"] is not None and abs(x["margin"]) >= z]
  assert confident, "no decision outside the noise: the test would be vacuous"
  for x, y in confident:
    assert x["op"] == y["op"], (x, y)
  for x, y in zip(a["decisions"], b["decisions"]):
    assert x["edge"] == y["edge"]
    assert x["inside_noise"] == (x["margin"] is not None and abs(x["margin"]) < z)
  assert a["decided_by_prior"] + a["decided_by_rank"] == 6
