"""Parameter and multiply-add counts of DARTS evaluation networks
(`bayesnas_jax.evaluation.counting`) against independent counts."""
from bayesnas_jax.evaluation import counting, darts_network
from tests.evaluation.genotype_support import MODEL, THREE_INPUTS, TWO_INPUTS


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
