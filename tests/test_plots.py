"""The cell and γ figures (bayesnas_jax/plots.py), as PNG and SVG."""
import re

import numpy as np

from bayesnas_jax import derivation, plots
from tests.darts_support import DARTS_V2_DICT, OPS, SPEC


def _png_and_svg_texts(prefix):
  """Checks the PNG; returns the strings of the SVG's <text> elements."""
  png = open(prefix + ".png", "rb").read()
  svg = open(prefix + ".svg", encoding="utf-8").read()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
  return set(re.findall(r"<text[^>]*>([^<]*)</text>", svg))


def test_plot_cell_png_and_svg(tmp_path):
  cell = {"edges": [list(e) for e in DARTS_V2_DICT["normal"]] + [["avg_pool_3x3", 0, 2]],
          "concat": [2, 3, 4, 5]}  # a parallel op on 0->2 too
  prefix = str(tmp_path / "plots" / "normal_cell")
  plots.plot_cell(cell, prefix, "DARTS_V2 normal cell")
  texts = _png_and_svg_texts(prefix)
  assert {"sep_conv_3x3", "skip_connect", "dil_conv_3x3", "avg_pool_3x3",
          "DARTS_V2 normal cell", "2", "5"} <= texts
  assert "max_pool_3x3" not in texts


def test_plot_gamma_png_and_svg(tmp_path):
  rng = np.random.default_rng(1)
  gamma = 10.0 ** rng.uniform(-3, 1, (SPEC.num_edges, len(OPS)))
  gamma[0, 0] = np.inf
  gamma[0, 1] = np.nan
  prefix = str(tmp_path / "gamma")
  plots.plot_gamma(gamma, gamma > derivation.PRUNE_THRESHOLD, SPEC, prefix, "γ heatmap")
  texts = _png_and_svg_texts(prefix)
  assert set(OPS) <= texts and "2-&gt;5" in texts and "inf" in texts
  assert any("1/(2πe)" in t for t in texts)
