"""Every plot the package writes, through matplotlib's object API.

`figure(size)` makes a `matplotlib.figure.Figure` (no pyplot: no global state,
no backend to select; Agg renders the PNG); `save(fig, path_prefix)` writes
path_prefix + .png (dpi 130) and .svg (text stays text), both cropped to the
drawing; `save_png(fig, path, dpi)` writes one PNG as it is laid out. `save`
and `save_png` create the folder.
"""
from __future__ import annotations

import math
import os

import numpy as np

from bayesnas_jax.derivation import PRUNE_THRESHOLD
from bayesnas_jax.genotypes import DARTS_OP_NAMES


def figure(size):
  """A new figure of `size` (width, height) inches."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  return Figure(figsize=size)  # no pyplot: no global state, Agg renders the PNG


def save(fig, path_prefix):
  """path_prefix + .png (dpi 130) and + .svg, cropped to the drawing."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.dirname(os.path.abspath(path_prefix)), exist_ok=True)
  with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
    fig.savefig(path_prefix + ".png", dpi=130, bbox_inches="tight")
    fig.savefig(path_prefix + ".svg", bbox_inches="tight")


def save_png(fig, path, dpi=100):
  """One PNG at `path`, the figure as laid out (no cropping)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=dpi)


def op_colours(ops):
  """A fixed colour per op: DARTS ops always get the same one across plots."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  palette = matplotlib.colormaps["tab10"].colors
  order = list(DARTS_OP_NAMES) + sorted(set(ops) - set(DARTS_OP_NAMES))
  return {op: palette[order.index(op) % len(palette)] for op in ops}


def plot_cell(cell, path_prefix, title, num_inputs=2):
  """Draws a derived cell (as from `derive_cell`) to path_prefix + .png/.svg.

  Inputs c_{k−2}, c_{k−1}, the numbered intermediate nodes and the output c_{k}
  sit in order on one ellipse, so no straight edge passes through a node;
  edges are arrows coloured and labelled by op (parallel ops on one edge bow
  apart), dashed grey arrows feed the concat nodes to c_{k}.
  """
  edges = [(str(op), int(s), int(t)) for op, s, t in cell["edges"]]
  inner = sorted(({n for _, s, t in edges for n in (s, t)} | set(cell["concat"]))
                 - set(range(num_inputs)))
  order = list(range(num_inputs)) + inner + ["out"]
  # Inputs left, intermediate nodes over the top, output right: one ellipse.
  angles = np.radians(np.concatenate([np.linspace(215, 145, num_inputs),
                                      np.linspace(112, 20, len(inner)) if inner else [],
                                      [-35]]))
  where = {node: (5.0 * math.cos(a), 3.4 * math.sin(a)) for node, a in zip(order, angles)}
  names = {i: f"$c_{{k-{num_inputs - i}}}$" for i in range(num_inputs)} | {"out": "$c_{k}$"}
  colours = op_colours(sorted({op for op, _, _ in edges}))
  fig = figure((9.0, 5.8))
  ax = fig.add_subplot()
  parallel = {}
  for op, source, target in edges:
    index = parallel[(source, target)] = parallel.get((source, target), -1) + 1
    rad = 0.0 if index == 0 else 0.25 * (-1) ** index * ((index + 1) // 2)
    (x0, y0), (x1, y1) = where[source], where[target]
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(
        arrowstyle="-|>", color=colours[op], lw=1.8, shrinkA=15, shrinkB=15,
        connectionstyle=f"arc3,rad={rad}"))
    # A point on matplotlib's arc3 quadratic Bézier (equal aspect: data ∝ display),
    # staggered by target so labels of a fan of edges do not sit side by side.
    cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
    t = 0.42 + 0.16 * (target % 2)
    ax.text((1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t ** 2 * x1,
            (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t ** 2 * y1, op,
            color=colours[op], fontsize=7.5, ha="center", va="center",
            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))
  for node in cell["concat"]:
    ax.annotate("", where["out"], where[node], arrowprops=dict(
        arrowstyle="-|>", color="grey", ls="--", shrinkA=15, shrinkB=15))
  for node, (x, y) in where.items():
    colour = "#f9d3a8" if node == "out" else ("#bcd6ee" if node in names else "#e6e6e6")
    ax.text(x, y, names.get(node, str(node)), ha="center", va="center", fontsize=11,
            bbox=dict(boxstyle="round,pad=0.4", fc=colour, ec="black"))
  ax.set(xlim=(-5.8, 5.8), ylim=(-2.3, 3.9), aspect="equal", title=title)
  ax.axis("off")
  save(fig, path_prefix)


def plot_gamma(op_gamma, op_keep, spec, path_prefix, title, threshold=PRUNE_THRESHOLD):
  """Heatmap of log10 γ per (edge, op), centred on the prune threshold
  (red: pruned side, blue: kept side; a line on the colour bar marks 1/(2πe));
  kept pairs are outlined and every cell shows its γ. Writes .png and .svg."""
  from matplotlib.colors import TwoSlopeNorm  # pylint: disable=import-outside-toplevel
  from matplotlib.patches import Rectangle  # pylint: disable=import-outside-toplevel
  gamma = np.asarray(op_gamma, np.float64)
  keep = np.asarray(op_keep, bool)
  values = np.ma.masked_invalid(np.log10(np.clip(gamma, 1e-12, 1e12)))
  centre = math.log10(threshold)
  finite = np.log10(gamma[np.isfinite(gamma) & (gamma > 0)]).tolist() + [centre]
  low, high = min(finite) - 0.5, max(finite) + 0.5  # γ = 0 or ∞ saturate the colours
  fig = figure((2.0 + 1.0 * len(spec.ops), 1.4 + 0.34 * spec.num_edges))
  ax = fig.add_subplot()
  image = ax.imshow(values, cmap="RdBu", aspect="auto",
                    norm=TwoSlopeNorm(vcenter=centre, vmin=low, vmax=high))
  for e in range(gamma.shape[0]):
    for o in range(gamma.shape[1]):
      dark = (not np.ma.is_masked(values[e, o])
              and abs(float(image.norm(values[e, o])) - 0.5) > 0.3)
      ax.text(o, e, f"{gamma[e, o]:.2g}", ha="center", va="center", fontsize=6,
              color="white" if dark else "black",
              fontweight="bold" if keep[e, o] else "normal")
      if keep[e, o]:
        ax.add_patch(Rectangle((o - 0.5, e - 0.5), 1, 1, fill=False, ec="black", lw=1.6))
  ax.set_xticks(range(len(spec.ops)), [str(op) for op in spec.ops], rotation=40,
                ha="right", fontsize=7)
  ax.set_yticks(range(spec.num_edges), [f"{s}->{t}" for s, t in spec.edges], fontsize=7)
  ax.set(xlabel="op", ylabel="edge (from->to)")
  bar = fig.colorbar(image, ax=ax, label="log10 γ")
  bar.ax.axhline(centre, color="black", lw=2)
  ax.set_title(f"{title}\noutlined: kept; threshold γ = 1/(2πe) ≈ {threshold:.4f}",
               fontsize=9)
  save(fig, path_prefix)
