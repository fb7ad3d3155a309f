"""The quality benchmark's bookkeeping (`bayesnas_jax.quality.benchmark`) on hand-made
numbers: the percentile, the stability per edge, and the protocol fields a shared
pool of random cells must match. The benchmark itself runs end to end in
tests/integration/test_quality_benchmark.py."""
from bayesnas_jax.quality import benchmark as quality


def test_percentile_counts_ties_half():
  assert quality.percentile(0.5, [0.1, 0.2, 0.6, 0.7]) == 50.0
  assert quality.percentile(0.9, [0.1, 0.2]) == 100.0
  assert quality.percentile(0.2, [0.1, 0.2, 0.3, 0.4]) == 37.5
  assert quality.percentile(0.0, [0.1]) == 0.0


def test_stability_counts_seeds_agreeing_per_edge():
  a = {"cell": [["nor_conv_3x3", 0, 1], ["none", 0, 2]]}
  b = {"cell": [["nor_conv_3x3", 0, 1], ["skip_connect", 0, 2]]}
  c = {"cell": [["avg_pool_3x3", 0, 1], ["skip_connect", 0, 2]]}
  table = {row["edge"]: row for row in quality.stability([a, b, c])}
  assert table["0->1"]["choice"] == "nor_conv_3x3" and table["0->1"]["agree"] == 2
  assert table["0->2"]["choice"] == "skip_connect" and table["0->2"]["agree"] == 2
  # A DARTS genotype: two ops on one edge are one choice; unused edges are "none".
  d = {"normal": [["skip_connect", 0, 2], ["max_pool_3x3", 0, 2]], "normal_concat": [2]}
  e = {"normal": [["skip_connect", 1, 2]], "normal_concat": [2]}
  rows = {row["edge"]: row for row in quality.stability([d, e])}
  assert rows["0->2"]["choices"] == {"max_pool_3x3+skip_connect": 1, "none": 1}
  assert rows["1->2"]["choices"] == {"skip_connect": 1, "none": 1}


def test_pool_protocol_ignores_fields_that_change_nothing():
  """A pool recorded before input.pipeline/input.workers existed still matches at
  their neutral values; another pipeline does not."""
  from bayesnas_jax.quality import benchmark as quality  # pylint: disable=import-outside-toplevel
  old = {"input": {"batch_size": 8}, "model": {"genotype": "a.json", "channels": 4}}
  new = {"input": {"batch_size": 8, "pipeline": "memory", "workers": 3},
         "model": {"genotype": "b.json", "channels": 4}}
  assert quality._comparable(old) == quality._comparable(new)  # pylint: disable=protected-access
  new["input"]["pipeline"] = "grain"
  assert quality._comparable(old) != quality._comparable(new)  # pylint: disable=protected-access
