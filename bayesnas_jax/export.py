"""Derivation of discrete cells and everything a search writes to disk.

* `derive_cell` (SPEC §4, "Derived cell"): prune by γ, then keep per intermediate
  node the k strongest surviving (edge, op) pairs by γ. A node without a
  selected input is dead, and pairs leaving a dead node do not survive (SPEC §3
  step 4), so nodes are visited in order and only live sources compete.
* Genotypes: `{"normal": [[op, from, to], ...], "normal_concat": [...],
  "reduce": [...], "reduce_concat": [...]}` as genotype.json and, when every
  intermediate node has exactly two inputs, the DARTS `Genotype(...)` literal.
* Files are written atomically (temporary file in the same folder, then
  `os.replace`); numpy and jax values become plain Python.
* Plots use matplotlib's object API (Agg rendering, no pyplot state).

Pure numpy: jax arrays are accepted through `np.asarray`.
"""
from __future__ import annotations

import ast
import json
import math
import os
import tempfile

import numpy as np

PRUNE_THRESHOLD = 1.0 / (2.0 * math.pi * math.e)  # γ ≤ 1/(2πe) ⇔ entropy ≤ 0 (= prior's)
DARTS_OP_NAMES = ("skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                  "dil_conv_5x5", "max_pool_3x3", "avg_pool_3x3")
GENOTYPE_KEYS = ("normal", "normal_concat", "reduce", "reduce_concat")
CELL_KINDS = ("normal", "reduce")


# --- Derivation -----------------------------------------------------------

DERIVATIONS = ("pairs", "edges")


def derive_cell(op_gamma, op_keep, spec, k=2, origin_keep=None, rule="pairs"):
  """The discrete cell: {"edges": [[op, from, to], ...], "concat": [nodes]}.

  op_gamma, op_keep: [E, O] in the edge order of `spec` (a `CellSpec`): the
  score to rank by (γ, or another `search.rank_by` score) and what survived
  pruning; origin_keep [E], if given, switches off every op of a pruned edge.
  Per intermediate node, from live sources:
  * rule "pairs": the k kept (edge, op) pairs with the largest score (two ops
    may land on one edge);
  * rule "edges" (DARTS's rule): the best kept op of each edge, then the k
    edges whose best op scores highest (one op per edge).
  Ties (and NaN scores, ranked last) are broken by edge, then op index. Edges
  come sorted by (to, from, op index); "concat" lists the intermediate nodes
  with at least one selected input.
  """
  if rule not in DERIVATIONS:
    raise ValueError(f"config.search.derivation: expected one of {DERIVATIONS}, got "
                     f"{rule!r}")
  gamma = np.asarray(op_gamma, np.float64)
  keep = np.asarray(op_keep, bool)
  shape = (spec.num_edges, len(spec.ops))
  if gamma.shape != shape or keep.shape != shape:
    raise ValueError(f"derive_cell: expected op_gamma and op_keep of shape {shape} "
                     f"[edges, ops], got {gamma.shape} and {keep.shape}")
  if int(k) < 1:
    raise ValueError(f"derive_cell: expected k ≥ 1, got {k}")
  if origin_keep is not None:
    keep = keep & np.asarray(origin_keep, bool).reshape(spec.num_edges, 1)
  rank = np.where(np.isnan(gamma), -np.inf, gamma)
  alive = set(range(spec.num_inputs))
  edges = []
  for node in spec.intermediate:
    candidates = [(-rank[e, o], e, o) for e in spec.in_edges(node)
                  for o in range(len(spec.ops))
                  if keep[e, o] and spec.edges[e][0] in alive]
    if rule == "edges":  # the best op of each edge, then the best edges
      best = {}
      for candidate in sorted(candidates):
        best.setdefault(candidate[1], candidate)
      candidates = list(best.values())
    chosen = sorted(candidates)[:int(k)]
    if chosen:
      alive.add(node)
    for _, e, o in sorted(chosen, key=lambda t: (spec.edges[t[1]][0], t[2])):
      edges.append([spec.ops[o], int(spec.edges[e][0]), int(node)])
  return {"edges": edges, "concat": [n for n in spec.intermediate if n in alive]}


def genotype_from_cells(normal, reduce):
  """The genotype dict from two `derive_cell` results."""
  return {"normal": [list(e) for e in normal["edges"]], "normal_concat": list(normal["concat"]),
          "reduce": [list(e) for e in reduce["edges"]], "reduce_concat": list(reduce["concat"])}


def darts_genotype_literal(genotype, num_nodes=4, num_inputs=2):
  """`Genotype(normal=[(op, from), ...], normal_concat=..., reduce=..., reduce_concat=...)`.

  DARTS lists two (op, from) pairs per intermediate node in node order, so the
  literal exists only when each of the `num_nodes` nodes has exactly two inputs
  (else None). A concat of all intermediate nodes is written `range(a, b)`.
  """
  intermediate = list(range(num_inputs, num_inputs + num_nodes))
  parts = []
  for kind in CELL_KINDS:
    per_node = {node: [] for node in intermediate}
    for op, source, target in genotype[kind]:
      if target not in per_node:
        return None
      per_node[target].append(f"({str(op)!r}, {int(source)})")
    if any(len(p) != 2 for p in per_node.values()):
      return None
    concat = [int(n) for n in genotype[f"{kind}_concat"]]
    concat_text = (f"range({intermediate[0]}, {intermediate[-1] + 1})"
                   if concat == intermediate else repr(concat))
    pairs = ", ".join(p for node in intermediate for p in per_node[node])
    parts.append(f"{kind}=[{pairs}], {kind}_concat={concat_text}")
  return f"Genotype({', '.join(parts)})"


# --- Reading genotypes ----------------------------------------------------

class _Invalid(ValueError):
  pass


def _require(condition, message):
  if not condition:
    raise _Invalid(message)


def _is_int(value):
  return isinstance(value, int) and not isinstance(value, bool)


def _call_name(node):
  func = getattr(node, "func", None)
  return getattr(func, "id", None) or getattr(func, "attr", None)


def _value(node):
  """A literal, or range(...) / list(range(...)) with integer bounds."""
  if _call_name(node) == "list" and len(node.args) == 1:
    node = node.args[0]
  if _call_name(node) == "range":
    bounds = [ast.literal_eval(a) for a in node.args]
    _require(bounds and all(map(_is_int, bounds)), "range() with integer bounds")
    return list(range(*bounds))
  return ast.literal_eval(node)


def _parse_darts_literal(text, num_inputs):
  """`[NAME =] Genotype(...)` → genotype dict; DARTS gives two (op, from) per node."""
  body = ast.parse(text).body
  call = body[0].value if len(body) == 1 and hasattr(body[0], "value") else None
  _require(_call_name(call) == "Genotype", "no single Genotype(...) expression found")
  _require(len(call.args) <= 4, "at most 4 positional fields")
  fields = dict(zip(GENOTYPE_KEYS, map(_value, call.args)))
  fields.update({kw.arg: _value(kw.value) for kw in call.keywords})
  for kind in CELL_KINDS:
    pairs = fields.get(kind)
    _require(isinstance(pairs, (list, tuple)) and len(pairs) % 2 == 0
             and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs),
             f"{kind}: a list of (op, from) pairs, two per node")
    fields[kind] = [[op, source, num_inputs + i // 2] for i, (op, source) in enumerate(pairs)]
  return fields


def _validated(genotype, ops, num_inputs):
  _require(isinstance(genotype, dict) and all(k in genotype for k in GENOTYPE_KEYS),
           f"an object with keys {list(GENOTYPE_KEYS)}")
  out = {}
  for kind in CELL_KINDS:
    edges, concat = genotype[kind], genotype[f"{kind}_concat"]
    _require(isinstance(edges, list), f"{kind}: a list of [op, from, to]")
    for edge in edges:
      _require(isinstance(edge, (list, tuple)) and len(edge) == 3 and edge[0] in ops
               and all(map(_is_int, edge[1:])) and 0 <= edge[1] < edge[2]
               and edge[2] >= num_inputs,
               f"{kind}: [op in {list(ops)}, from, to] with 0 ≤ from < to, got {edge!r}")
    _require(isinstance(concat, (list, tuple))
             and all(_is_int(n) and n >= num_inputs for n in concat),
             f"{kind}_concat: a list of intermediate node numbers, got {concat!r}")
    # Canonical order: by destination, then source (stable for parallel ops).
    out[kind] = sorted(([str(e[0]), e[1], e[2]] for e in edges), key=lambda e: (e[2], e[1]))
    out[f"{kind}_concat"] = list(concat)
  return out


def load_genotype(path, ops=DARTS_OP_NAMES, num_inputs=2):
  """Reads genotype.json or a file holding one DARTS `Genotype(...)` literal.

  The literal is parsed with `ast`, never evaluated. Returns the genotype dict
  (edges sorted by destination, then source); anything else raises a one-line
  ValueError naming the file and what was expected.
  """
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
    genotype = (json.loads(text) if text.lstrip().startswith("{")
                else _parse_darts_literal(text, num_inputs))
    return _validated(genotype, tuple(ops), num_inputs)
  except (OSError, ValueError, SyntaxError, TypeError, RecursionError) as err:
    reason = str(err) if isinstance(err, _Invalid) else f"{type(err).__name__}: {err}"
    raise ValueError(f"genotype file {path}: expected genotype.json {{\"normal\": [[op, "
                     f"from, to], ...], \"normal_concat\": [...], \"reduce\": ..., "
                     f"\"reduce_concat\": ...}} or a DARTS Genotype(...) literal; "
                     f"{' '.join(reason.split())}") from None


# --- Writing files --------------------------------------------------------

def plain(value):
  """numpy / jax scalars and arrays (also inside dicts, lists) → Python types."""
  if isinstance(value, dict):
    return {str(k): plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [plain(v) for v in value]
  if isinstance(value, np.generic) or hasattr(value, "__array__"):
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()
  return value


def _write_text_atomic(path, text):
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path, text):
  """Writes `text` to `path` atomically."""
  _write_text_atomic(path, text)


def write_json(path, obj, indent=1):
  """Writes `obj` as JSON atomically: readers see the old file or the new one.

  The object is serialised before anything is written, so a failure leaves
  the old file untouched and no temporary file behind.
  """
  _write_text_atomic(path, json.dumps(plain(obj), indent=indent) + "\n")


def append_jsonl(path, obj):
  """Appends `obj` as one JSON line (a single write call)."""
  line = json.dumps(plain(obj)) + "\n"
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a", encoding="utf-8") as f:
    f.write(line)


def write_genotype(workdir, genotype, num_nodes=4, num_inputs=2):
  """genotype.json and, when it exists, genotype_darts.txt (a stale one is removed).
  Returns the DARTS literal or None."""
  write_json(os.path.join(workdir, "genotype.json"), genotype)
  literal = darts_genotype_literal(genotype, num_nodes, num_inputs)
  target = os.path.join(workdir, "genotype_darts.txt")
  if literal is not None:
    _write_text_atomic(target, literal + "\n")
  elif os.path.exists(target):
    os.remove(target)
  return literal


def architecture_records(round_index, cell_type, spec, parts):
  """Flat per-scalar records of one cell type (rounds/*.json, architecture.json).

  parts = {"ops": fields, "origin": fields} ("origin" optional). Each fields
  dict maps "w", "H", "C", "omega", "s", "gamma", "kept" to arrays that are
  either per member — [n_cells, E, O] for ops, [n_cells, E] for origins — or per
  group, without the leading n_cells axis (one value shared by the cells of a
  type, eq. 21); "w" must be per member. One record per cell, edge and op (the
  origin first, op "origin"), named e.g. "normal/cell0/2->3/sep_conv_3x3".
  """
  arrays = {}
  for part, per_edge in (("origin", ()), ("ops", (len(spec.ops),))):
    if part in parts:
      shape = np.shape(parts[part]["w"])[:1] + (spec.num_edges,) + per_edge
      try:
        arrays[part] = {name: np.broadcast_to(np.asarray(value), shape)
                        for name, value in parts[part].items()}
      except ValueError as err:
        raise ValueError(f"architecture_records {cell_type}/{part}: expected arrays of "
                         f"shape {shape} or {shape[1:]} (w per member): {err}") from None
  records = []
  for cell in range(next(iter(arrays.values()))["w"].shape[0] if arrays else 0):
    for e, (source, target) in enumerate(spec.edges):
      for part, op_names in (("origin", ("origin",)), ("ops", spec.ops)):
        for o, op in enumerate(op_names if part in arrays else ()):
          index = (cell, e) if part == "origin" else (cell, e, o)
          records.append({
              "round": int(round_index), "name": f"{cell_type}/cell{cell}/{source}->{target}/{op}",
              "cell_type": cell_type, "cell": cell, "from": int(source), "to": int(target),
              "op": op, **{name: bool(a[index]) if name == "kept" else float(a[index])
                           for name, a in arrays[part].items()}})
  return records


# --- Plots ----------------------------------------------------------------

def _figure(size):
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  return Figure(figsize=size)  # no pyplot: no global state, Agg renders the PNG


def _save(fig, prefix):
  import matplotlib  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
    fig.savefig(prefix + ".png", dpi=130, bbox_inches="tight")
    fig.savefig(prefix + ".svg", bbox_inches="tight")


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
  fig = _figure((9.0, 5.8))
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
  _save(fig, path_prefix)


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
  fig = _figure((2.0 + 1.0 * len(spec.ops), 1.4 + 0.34 * spec.num_edges))
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
  _save(fig, path_prefix)
