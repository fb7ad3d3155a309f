"""The discrete side of the NAS-Bench-201 space (`spaces/nb201.py`) against
hand-made tables: the derivation, NB201 strings and files, uniform random cells,
and the per-edge decisions with their margins."""
import json
import math
import types

import jax
import ml_collections
import numpy as np
import pytest

from configs import nb201_cifar10_search
from bayesnas_jax import spaces
from bayesnas_jax.spaces import nb201
from tests.spaces.nb201_support import EDGES, EXAMPLE, EXAMPLE_EDGES, OPS
from tests.spaces.nb201_support import config as _config
from tests.tests_support import hard_state

LAMBDA = 0.01  # λ_w of the decisions (section 4)


# --- 1. Derivation ------------------------------------------------------------

def _search(grouping):
  return types.SimpleNamespace(grouping=grouping)


def test_derive_from_gamma_and_keep():
  spec = nb201.cell_spec()
  # ops columns: skip, conv1x1, conv3x3, pool
  gamma = np.array([[9.0, 1.0, 2.0, 3.0],   # origin pruned → none
                    [1.0, 2.0, 3.0, 4.0],   # every op pruned → none
                    [1.0, 2.0, 9.0, 3.0],   # conv3x3 has the largest γ but is pruned
                    [0.5, 0.7, 0.1, 0.6],   # all kept: conv1x1
                    [2.0, 2.0, 1.0, 0.0],   # a tie: the first op (skip)
                    [5.0, 0.1, np.nan, 4.0]])  # pruned skip, NaN never wins: pool
  keep = np.ones((6, 4), bool)
  keep[1] = False
  keep[2, 2] = False
  keep[5, 0] = False
  keep_origin = np.ones(6, bool)
  keep_origin[0] = False
  state = hard_state(gamma={"cell": {"origin": np.ones(6), "ops": gamma}},
                     keep={"cell": {"origin": keep_origin, "ops": keep}})
  expected = {"cell": [["none", 0, 1], ["none", 0, 2], ["avg_pool_3x3", 1, 2],
                       ["nor_conv_1x1", 0, 3], ["skip_connect", 1, 3],
                       ["avg_pool_3x3", 2, 3]]}
  assert nb201.derive(state, _search("cell_type"), spec) == expected
  # Through the SearchSpace as the search loop calls it.
  space = nb201.make(_config(1))
  assert space.derive(state, _search("cell_type")) == expected

  # grouping "none": per-member arrays [2, ...]; γ is averaged over members and
  # a pair is kept if any member keeps it.
  gamma_m = np.stack([gamma, gamma])
  gamma_m[0, 3] = [0.9, 0.0, 0.0, 0.0]  # mean row 3: [0.7, 0.35, 0.05, 0.3] → skip
  keep_m = np.stack([keep, keep])
  keep_m[1, 1, 2] = True  # edge 0→2: conv3x3 kept by member 1 only
  keep_m[0, 2, :] = False  # edge 1→2: member 1 still keeps its pool
  origin_m = np.stack([keep_origin, keep_origin])
  origin_m[1, 0] = True  # edge 0→1: origin kept by member 1 → argmax skip
  state_m = hard_state(gamma={"cell": {"origin": np.ones((2, 6)), "ops": gamma_m}},
                       keep={"cell": {"origin": origin_m, "ops": keep_m}})
  expected_m = {"cell": [["skip_connect", 0, 1], ["nor_conv_3x3", 0, 2],
                         ["avg_pool_3x3", 1, 2], ["skip_connect", 0, 3],
                         ["skip_connect", 1, 3], ["avg_pool_3x3", 2, 3]]}
  assert nb201.derive(state_m, _search("none"), spec) == expected_m
  # The same tables in the [1, ...] layout of grouping "none" with one member.
  state_1 = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], state)
  assert nb201.derive(state_1, _search("none"), spec) == expected


# --- 2. NB201 strings and files ------------------------------------------------

def _gamma_state():
  rng = np.random.default_rng(0)
  return hard_state(gamma={"cell": {"origin": rng.uniform(0.01, 2, 6),
                                   "ops": rng.uniform(0.01, 2, (6, 4))}},
                    keep={"cell": {"origin": np.ones(6, bool),
                                   "ops": rng.uniform(size=(6, 4)) > 0.3}})


def test_arch_string_parse_and_files(tmp_path):
  spec = nb201.cell_spec()
  assert nb201.parse_arch_string(EXAMPLE) == {"cell": EXAMPLE_EDGES}
  assert nb201.parse_arch_string("  " + EXAMPLE + "\n") == {"cell": EXAMPLE_EDGES}
  assert nb201.arch_string({"cell": EXAMPLE_EDGES}) == EXAMPLE
  # The string does not depend on the order the edges are listed in.
  assert nb201.arch_string({"cell": EXAMPLE_EDGES[::-1]}) == EXAMPLE
  assert nb201.arch_string({"cell": [["none", j, k] for j, k in EDGES]}) == (
      "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")

  space = nb201.make(_config(1))
  rng = np.random.default_rng(1)
  for t in range(30):
    arch = space.random_architecture(rng)
    assert [(j, k) for _, j, k in arch["cell"]] == list(EDGES)
    text = nb201.arch_string(arch)
    assert nb201.parse_arch_string(text) == arch
    path = tmp_path / f"arch_{t}.txt"
    path.write_text(text + "\n")
    assert space.load_architecture(str(path)) == arch
  # genotype.json and nb201_arch.txt written by the export, read back.
  for t in range(2):
    arch = nb201.random_architecture(rng, spec)
    workdir = tmp_path / f"run_{t}"
    workdir.mkdir()
    summary = space.export(str(workdir), arch, _gamma_state(), _search("cell_type"))
    assert summary["nb201"] == nb201.arch_string(arch)
    assert summary["derived_edges"]["cell"] == sum(op != "none" for op, _, _ in arch["cell"])
    genotype = json.loads((workdir / "genotype.json").read_text())
    assert genotype["cell"] == arch["cell"]
    assert nb201.load_architecture(str(workdir / "genotype.json")) == arch
    assert nb201.load_architecture(str(workdir / "nb201_arch.txt")) == arch

  bad_strings = [
      "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",  # two groups
      EXAMPLE + "+|none~0|none~1|none~2|none~3|",  # four groups
      EXAMPLE.replace("avg_pool_3x3~1", "avg_pool_3x3~0"),  # wrong source
      EXAMPLE.replace("|nor_conv_3x3~0|+", "|nor_conv_3x3~1|+", 1),
      EXAMPLE.replace("avg_pool_3x3", "max_pool_3x3"),  # unknown op
      EXAMPLE.replace("skip_connect~2", "skip_connect~2|none~3"),  # too many inputs
      EXAMPLE.replace("|avg_pool_3x3~1", ""),  # too few inputs
      EXAMPLE.replace("nor_conv_3x3~0|+", "nor_conv_3x3~0+", 1),  # missing bar
      "nor_conv_3x3 0 1\nskip_connect 0 2",
      "",
  ]
  for text in bad_strings:
    with pytest.raises(ValueError) as info:
      nb201.parse_arch_string(text)
    assert "\n" not in str(info.value) and "NB201 string" in str(info.value), text
  # An op outside a restricted op set is refused.
  with pytest.raises(ValueError, match="bad entry"):
    nb201.parse_arch_string(EXAMPLE, ops=("skip_connect", "nor_conv_3x3"))

  # Malformed files: one-line errors naming the file.
  cases = {
      "bad.txt": EXAMPLE.replace("skip_connect~2", "skip_connect~1"),
      "short.json": json.dumps({"cell": EXAMPLE_EDGES[:5]}),
      "badop.json": json.dumps({"cell": [["conv_7x7", 0, 1]] + EXAMPLE_EDGES[1:]}),
      "nocell.json": json.dumps({"normal": EXAMPLE_EDGES}),
      "broken.json": "{\"cell\": [",
  }
  for name, text in cases.items():
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError) as info:
      nb201.load_architecture(str(tmp_path / name))
    message = str(info.value)
    assert "\n" not in message and name in message, (name, message)
  with pytest.raises(ValueError, match="missing.txt"):
    nb201.load_architecture(str(tmp_path / "missing.txt"))


# --- 3. Uniform random cells --------------------------------------------------------

def test_random_architecture_is_uniform_per_edge_and_independent():
  spec = nb201.cell_spec()
  choices = ("none",) + OPS
  draws = 5000
  rng = np.random.default_rng(2024)
  table = np.array([[choices.index(op) for op, _, _ in
                     nb201.random_architecture(rng, spec)["cell"]] for _ in range(draws)])
  assert table.shape == (draws, 6)
  # Per edge, each of the 5 choices: Binomial(5000, 1/5), 5 σ ≈ 141 draws.
  p = 1 / len(choices)
  bound = 5 * math.sqrt(draws * p * (1 - p))
  for e in range(6):
    counts = np.bincount(table[:, e], minlength=len(choices))
    assert np.all(np.abs(counts - draws * p) < bound), (e, counts)
  # Consecutive edges are independent: each of the 25 joint outcomes ~1/25.
  q = p * p
  bound = 5 * math.sqrt(draws * q * (1 - q))
  for e in range(5):
    joint = np.bincount(table[:, e] * 5 + table[:, e + 1], minlength=25)
    assert np.all(np.abs(joint - draws * q) < bound), (e, joint)
  # The same generator state gives the same cell (numpy rngs drive it).
  a = nb201.random_architecture(np.random.default_rng(7), spec)
  b = nb201.random_architecture(np.random.default_rng(7), spec)
  assert a == b


def test_random_cells_are_uniform_over_the_nb201_space():
  space = spaces.make(nb201_cifar10_search.get_config("tiny").space)
  rng = np.random.default_rng(0)
  draws = [space.random_architecture(rng) for _ in range(3000)]
  ops = np.array([[e[0] for e in d["cell"]] for d in draws])
  for choice in ("none",) + tuple(space.cells["cell"].ops):
    share = np.mean(ops == choice, axis=0)
    # 1/5 ± 5 standard errors of a share over 3,000 draws (≈ 0.037).
    assert np.all(np.abs(share - 0.2) < 5 * np.sqrt(0.2 * 0.8 / 3000)), (choice, share)


# --- 4. Decisions ---------------------------------------------------------------

def _search_config(rank_by="saliency"):
  return ml_collections.ConfigDict(dict(grouping="cell_type", rank_by=rank_by,
                                        lambda_w=LAMBDA))


def _state(score, se, keep, before, origin_keep=None):
  spec = nb201.cell_spec()
  o = np.ones((6,), bool) if origin_keep is None else origin_keep
  return spec, hard_state(
      score={"cell": {"ops": np.asarray(score), "origin": np.zeros(6)}},
      score_se={"cell": {"ops": np.asarray(se), "origin": np.zeros(6)}},
      keep={"cell": {"ops": np.asarray(keep), "origin": o}},
      alive_before={"cell": {"ops": np.asarray(before), "origin": np.ones(6, bool)}},
      gamma={"cell": {"ops": np.asarray(score), "origin": np.zeros(6)}})


def test_nb201_decisions_count_prior_and_rank_and_rate_margins():
  score = np.full((6, 4), 0.001)
  se = np.full((6, 4), 0.001)
  keep = np.zeros((6, 4), bool)
  before = np.ones((6, 4), bool)
  # Edge 0→1: the prior left one op (conv 3×3), runner-up skip by 0.010 ± √2·0.001.
  keep[0, 2] = True
  score[0, 2], score[0, 0] = 0.012, 0.002
  # Edge 0→2: the prior left two ops; rank picks the larger score (1×1), margin 0.5 s.e.
  keep[1, 1] = keep[1, 3] = True
  score[1, 1], score[1, 3] = 0.0205, 0.02
  # Edge 1→2: nothing left: none, by the prior; best op 0.004 under λ by 6 s.e.
  score[2, 0] = 0.004
  # Edges 0→3, 1→3, 2→3: one op each, alone since the previous round.
  for e, o in ((3, 0), (4, 2), (5, 2)):
    keep[e, o] = True
    before[e] = False
    before[e, o] = True
    score[e, o] = 0.03
  spec, state = _state(score, se, keep, before)
  decided = nb201.decisions(state, _search_config(), spec)
  assert [d["op"] for d in decided] == ["nor_conv_3x3", "nor_conv_1x1", "none",
                                        "skip_connect", "nor_conv_3x3", "nor_conv_3x3"]
  assert [d["decided_by"] for d in decided] == ["prior", "rank", "prior", "prior", "prior",
                                                "prior"]
  assert decided[1]["survivors"] == ["nor_conv_1x1", "avg_pool_3x3"]
  assert decided[0]["margin"] == pytest.approx(0.010 / (np.sqrt(2) * 0.001))
  assert decided[1]["margin"] == pytest.approx(0.0005 / (np.sqrt(2) * 0.001))
  assert decided[2]["margin"] == pytest.approx((LAMBDA - 0.004) / 0.001)
  # Alone on its edge: the alternative is `none`, scored at λ.
  assert decided[3]["margin"] == pytest.approx((0.03 - LAMBDA) / 0.001)
  assert nb201.derive(state, _search_config(), spec)["cell"][1] == ["nor_conv_1x1", 0, 2]
  # No noise measured: no margin.
  _, quiet = _state(score, np.zeros((6, 4)), keep, before)
  assert all(d["margin"] is None for d in nb201.decisions(quiet, _search_config(), spec))
