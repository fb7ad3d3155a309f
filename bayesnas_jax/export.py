"""Derivation of discrete cells and everything a search writes to disk.

derive_cell (SPEC §4): prune by γ, then keep per intermediate node the k
strongest surviving (edge, op) pairs by γ; a node left without inputs is dead
and its out-edges go with it. Genotypes are written as JSON and, when every
node has two inputs, as a DARTS `Genotype(...)` literal.
"""
from __future__ import annotations

import ast
import json
import math
import os
import tempfile

import numpy as np

GENOTYPE_KEYS = ("normal", "normal_concat", "reduce", "reduce_concat")


# ----------------------------------------------------------------------------
# Derivation.


def derive_cell(op_gamma, op_keep, spec, k=2):
  """{"edges": [[op, from, to], ...], "concat": [live intermediate nodes]}.

  op_gamma, op_keep: [E, O] in the edge order of `spec`. Ties in γ are broken
  by edge, then op order.
  """
  op_gamma = np.asarray(op_gamma, np.float64)
  op_keep = np.asarray(op_keep, bool)
  alive = set(range(spec.num_inputs))
  chosen = []
  for node in spec.intermediate:
    candidates = [(-op_gamma[e, o], e, o) for e in spec.in_edges(node)
                  for o in range(len(spec.ops))
                  if op_keep[e, o] and spec.edges[e][0] in alive]
    best = sorted(candidates)[:k]
    if best:
      alive.add(node)
    chosen.extend([spec.ops[o], spec.edges[e][0], node] for _, e, o in
                  sorted(best, key=lambda t: (t[1], t[2])))
  concat = [n for n in spec.intermediate if n in alive]
  return {"edges": chosen, "concat": concat}


def genotype_from_cells(normal, reduce):
  return {"normal": normal["edges"], "normal_concat": normal["concat"],
          "reduce": reduce["edges"], "reduce_concat": reduce["concat"]}


def darts_genotype_literal(genotype, num_nodes=4, num_inputs=2):
  """The DARTS Genotype literal, or None unless every node has two inputs."""
  parts = []
  intermediate = list(range(num_inputs, num_inputs + num_nodes))
  for kind in ("normal", "reduce"):
    edges = genotype[kind]
    per_node = [[e for e in edges if e[2] == node] for node in intermediate]
    if any(len(p) != 2 for p in per_node):
      return None
    pairs = ", ".join(f"({op!r}, {source})" for p in per_node for op, source, _ in p)
    concat = list(genotype[f"{kind}_concat"])
    concat_text = (f"range({intermediate[0]}, {intermediate[-1] + 1})"
                   if concat == intermediate else repr(concat))
    parts.append(f"{kind}=[{pairs}], {kind}_concat={concat_text}")
  return f"Genotype({', '.join(parts)})"


def _parse_literal(text, path):
  tree = ast.parse(text.strip(), mode="eval").body
  if not (isinstance(tree, ast.Call) and getattr(tree.func, "id", "") == "Genotype"):
    raise ValueError("not a Genotype(...) call")
  fields = {}
  for keyword in tree.keywords:
    value = keyword.value
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "range":
      bounds = [ast.literal_eval(a) for a in value.args]
      fields[keyword.arg] = list(range(*bounds))
    else:
      fields[keyword.arg] = ast.literal_eval(value)
  genotype = {}
  for kind in ("normal", "reduce"):
    pairs = fields[kind]
    # DARTS lists two (op, from) pairs per intermediate node, in node order.
    genotype[kind] = [[op, int(source), 2 + i // 2] for i, (op, source) in enumerate(pairs)]
    genotype[f"{kind}_concat"] = [int(n) for n in fields[f"{kind}_concat"]]
  del path
  return genotype


def load_genotype(path):
  """Reads genotype.json or a file holding a DARTS Genotype(...) literal."""
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except OSError as err:
    raise ValueError(f"genotype file {path}: cannot be read ({err.strerror})") from err
  try:
    if text.lstrip().startswith("{"):
      genotype = json.loads(text)
    else:
      genotype = _parse_literal(text, path)
    for key in GENOTYPE_KEYS:
      if key not in genotype:
        raise ValueError(f"missing {key!r}")
    for kind in ("normal", "reduce"):
      for edge in genotype[kind]:
        op, source, target = edge
        if not (isinstance(op, str) and 0 <= int(source) < int(target)):
          raise ValueError(f"bad edge {edge!r}")
  except (ValueError, SyntaxError, KeyError, TypeError) as err:
    raise ValueError(f"genotype file {path}: expected genotype.json "
                     f"({{'normal': [[op, from, to], ...], 'normal_concat': [...], ...}}) "
                     f"or a DARTS Genotype(...) literal ({str(err).splitlines()[0]})") from err
  return genotype


# ----------------------------------------------------------------------------
# Files.


def _plain(value):
  if isinstance(value, dict):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if hasattr(value, "__array__") or isinstance(value, np.generic):
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()
  return value


def is_writer():
  """Only the first process of a multi-host run writes result files."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.process_index() == 0


def write_json(path, obj):
  """Writes JSON atomically: a temporary file in the same folder, then rename
  (on the first process of a multi-host run only)."""
  if not is_writer():
    return
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump(_plain(obj), f, indent=1)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_genotype(workdir, genotype, num_nodes=4):
  if not is_writer():
    return
  write_json(os.path.join(workdir, "genotype.json"), genotype)
  literal = darts_genotype_literal(genotype, num_nodes)
  target = os.path.join(workdir, "genotype_darts.txt")
  if literal is not None:
    with open(target + ".tmp", "w", encoding="utf-8") as f:
      f.write(literal + "\n")
    os.replace(target + ".tmp", target)
  elif os.path.exists(target):
    os.remove(target)


def architecture_records(round_index, cell_type, spec, parts):
  """Flat per-scalar records of one cell type for architecture.json.

  parts: {"origin": {...}, "ops": {...}}, each with per-member arrays w, H, C
  ([n, E] or [n, E, O]) and per-group (or per-member) omega, s, gamma, kept.
  """
  records = []
  for part in ("origin", "ops"):
    fields = {name: np.asarray(v) for name, v in parts[part].items()}
    members = fields["w"].shape[0]
    for cell in range(members):
      for e, (source, target) in enumerate(spec.edges):
        ops = ["origin"] if part == "origin" else list(spec.ops)
        for o, op in enumerate(ops):
          index = (cell, e) if part == "origin" else (cell, e, o)
          record = {"round": round_index, "name": f"{cell_type}/cell{cell}/{source}->{target}/{op}",
                    "cell_type": cell_type, "cell": cell, "from": source, "to": target,
                    "op": op}
          for name, array in fields.items():
            value = array[index] if array.ndim == fields["w"].ndim else array[index[1:]]
            record[name] = bool(value) if name == "kept" else float(value)
          records.append(record)
  return records


# ----------------------------------------------------------------------------
# Plots.


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def _save(fig, prefix):
  if not is_writer():
    _pyplot().close(fig)
    return
  fig.savefig(prefix + ".png", dpi=120, bbox_inches="tight")
  fig.savefig(prefix + ".svg", bbox_inches="tight")
  _pyplot().close(fig)


def plot_cell(cell, path_prefix, title, num_inputs=2):
  """Draws the derived cell DAG: inputs, intermediate nodes, output."""
  plt = _pyplot()
  nodes = sorted({n for _, s, t in cell["edges"] for n in (s, t)} | set(range(num_inputs))
                 | set(cell["concat"]))
  intermediate = [n for n in nodes if n >= num_inputs]
  position = {0: (0.0, 1.0), 1: (0.0, -1.0)}
  for i, node in enumerate(intermediate):
    position[node] = (1.5 + 1.5 * i, 1.2 * math.sin(1.3 * i))
  out_x = 1.5 + 1.5 * max(len(intermediate), 1)
  position["out"] = (out_x, 0.0)
  names = {0: "c_{k-2}", 1: "c_{k-1}", "out": "c_{k}"}
  ops = sorted({op for op, _, _ in cell["edges"]})
  colours = dict(zip(ops, plt.get_cmap("tab10").colors))
  fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(intermediate), 4))
  for op, source, target in cell["edges"]:
    (x0, y0), (x1, y1) = position[source], position[target]
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(
        arrowstyle="->", color=colours[op], lw=1.8, connectionstyle="arc3,rad=0.15",
        shrinkA=14, shrinkB=14))
    ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, op, color=colours[op], fontsize=7,
            ha="center")
  for node in cell["concat"]:
    (x0, y0), (x1, y1) = position[node], position["out"]
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color="grey",
                                                         ls="--", shrinkA=14, shrinkB=14))
  for node, (x, y) in position.items():
    colour = "#cde" if node in (0, 1) else ("#fdb" if node == "out" else "#eee")
    ax.text(x, y, names.get(node, str(node)), ha="center", va="center", fontsize=9,
            bbox=dict(boxstyle="round", fc=colour, ec="black"))
  ax.set_xlim(-0.8, out_x + 0.8)
  ax.set_ylim(-1.8, 1.8)
  ax.axis("off")
  ax.set_title(title)
  _save(fig, path_prefix)


def plot_gamma(op_gamma, op_keep, spec, path_prefix, title, threshold=None):
  """Heatmap of log10 γ per (edge, op); kept pairs marked, threshold in the bar."""
  plt = _pyplot()
  gamma = np.asarray(op_gamma, np.float64)
  keep = np.asarray(op_keep, bool)
  threshold = threshold or 1.0 / (2 * math.pi * math.e)
  values = np.log10(np.maximum(gamma, 1e-12))
  fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(spec.ops), 0.9 + 0.32 * len(spec.edges)))
  image = ax.imshow(values, cmap="viridis", aspect="auto")
  for e in range(gamma.shape[0]):
    for o in range(gamma.shape[1]):
      if keep[e, o]:
        ax.text(o, e, "kept", ha="center", va="center", fontsize=6, color="white")
  ax.set_xticks(range(len(spec.ops)), spec.ops, rotation=40, ha="right", fontsize=7)
  ax.set_yticks(range(len(spec.edges)), [f"{s}->{t}" for s, t in spec.edges], fontsize=7)
  bar = fig.colorbar(image, ax=ax)
  bar.set_label("log10 γ")
  bar.ax.axhline(math.log10(threshold), color="red", lw=2)
  ax.set_title(f"{title}\n(red line: 1/(2πe))", fontsize=9)
  _save(fig, path_prefix)
