"""Genotypes: the discrete cells of a DARTS-style search, and their file formats.

* `{"normal": [[op, from, to], ...], "normal_concat": [...], "reduce": [...],
  "reduce_concat": [...]}` as genotype.json and, when every intermediate node has
  exactly two inputs, the DARTS `Genotype(...)` literal (genotype_darts.txt);
  `write_genotype` writes both.
* `load_genotype` reads either back; the literal is parsed with `ast`, never evaluated.
"""
from __future__ import annotations

import ast
import json
import os

from bayesnas_jax import files

DARTS_OP_NAMES = ("skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                  "dil_conv_5x5", "max_pool_3x3", "avg_pool_3x3")
GENOTYPE_KEYS = ("normal", "normal_concat", "reduce", "reduce_concat")
CELL_KINDS = ("normal", "reduce")


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


# --- Writing genotypes ----------------------------------------------------

def write_genotype(workdir, genotype, num_nodes=4, num_inputs=2):
  """genotype.json and, when it exists, genotype_darts.txt (a stale one is removed).
  Returns the DARTS literal or None."""
  files.write_json(os.path.join(workdir, "genotype.json"), genotype)
  literal = darts_genotype_literal(genotype, num_nodes, num_inputs)
  target = os.path.join(workdir, "genotype_darts.txt")
  if literal is not None:
    files.write_text(target, literal + "\n")
  elif os.path.exists(target):
    os.remove(target)
  return literal
