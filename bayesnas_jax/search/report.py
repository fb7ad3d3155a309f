"""What a search leaves in its workdir: per-round records, the derived genotype,
architecture.json, cell plots and summary.json. Every number is computed."""
from __future__ import annotations

import glob
import json
import os

import jax
import numpy as np

from bayesnas_jax import derivation, files

SEARCH_PHASES = ("warmup", "train", "curvature", "update", "step5")


def _round_path(workdir, round_):
  return os.path.join(workdir, "rounds", f"round_{round_:03d}.json")


def write_round(workdir, round_, space, records, clamped):
  """Writes one round's per-scalar records (w, H, C, ω, s, γ, kept)."""
  os.makedirs(os.path.join(workdir, "rounds"), exist_ok=True)
  scalars = []
  for kind, parts in records.items():
    scalars.extend(derivation.architecture_records(round_, kind, space.cells[kind], parts))
  files.write_json(_round_path(workdir, round_),
                   {"round": round_, "clamped_curvature": clamped, "scalars": scalars})


def write_architecture(workdir, spec, prune_threshold, grouping, space_summary):
  """architecture.json: the cell's ops and edges, the decisions of the
  derivation and every round's per-scalar records (rounds/*.json), the file
  `launch.rederive` reads."""
  rounds = []
  for path in sorted(glob.glob(os.path.join(workdir, "rounds", "round_*.json"))):
    with open(path, encoding="utf-8") as f:
      rounds.append(json.load(f))
  files.write_json(os.path.join(workdir, "architecture.json"),
                   {"ops": list(spec.ops), "edges": [list(e) for e in spec.edges],
                    "prune_threshold": prune_threshold, "grouping": grouping,
                    **{k: space_summary[k] for k in
                       ("decided_by_prior", "decided_by_rank", "decisions")
                       if k in space_summary},
                    "rounds": rounds})


def write_search_outputs(config, workdir, space, prior_state, position):
  """The derived architecture (the space's files: genotype.json, plots, …) from
  the search's last `prior.HardState`, and architecture.json with every round's
  records."""
  prior_state = jax.device_get(prior_state)
  architecture = space.derive(prior_state, config.search)
  position["space_summary"] = space.export(workdir, architecture, prior_state, config.search)
  write_architecture(workdir, next(iter(space.cells.values())),
                     config.search.prune_threshold, config.search.grouping,
                     position["space_summary"])
  position["kept"] = {
      kind: {"ops": int(np.sum(np.asarray(prior_state.keep[kind]["ops"]))),
             "origins": int(np.sum(np.asarray(prior_state.keep[kind]["origin"])))}
      for kind in prior_state.keep}
  position["derived_params"] = space.parameter_count(architecture)


def finish(config, workdir, position):
  """summary.json from the run's bookkeeping (with the space's own fields)."""
  elapsed = position.get("elapsed", {})
  device = jax.devices()[0]
  with open(os.path.join(workdir, "genotype.json"), encoding="utf-8") as f:
    genotype = json.load(f)
  summary = {
      "search_seconds": round(sum(elapsed.get(k, 0.0) for k in SEARCH_PHASES), 3),
      "phase_seconds": {k: round(v, 3) for k, v in elapsed.items()},
      "device": f"{device.platform}:{device.device_kind}",
      "devices": jax.device_count(),
      "rounds": config.search.rounds,
      "kept_groups": position.get("kept", {}),
      **position.get("space_summary", {}),
      "derived_params": position.get("derived_params"),
      "derived_params_M": round(position.get("derived_params", 0) / 1e6, 4),
      "genotype": genotype,
      "skipped_files": position.get("skipped_files", 0),
  }
  if "test" in position:
    summary["retrain_test"] = position["test"]
  files.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary
