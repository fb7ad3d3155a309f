"""The HARD-prior step between rounds (Algorithm 1 steps 3–4, eqs. 17–20).

Works on the architecture-scalar tree of a cell-based space: per cell type,
`origin` [n, E] and `ops` [n, E, O] over the n stacked cells. With grouping
"cell_type" the same (edge, op) across the stack is one group (eq. 21): C stays
per member, ω, s, γ and the keep decision are per group. With grouping "none"
every scalar is its own group (eq. 16).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bayesnas_jax import prior
from bayesnas_jax.spaces.cell import CellSpec

GROUPINGS = ("cell_type", "none")


def group_shape(arch, grouping):
  """Shapes of the per-group state: [E], [E, O] per type, or per member."""
  def shape(a):
    return a.shape[1:] if grouping == "cell_type" else a.shape
  return jax.tree_util.tree_map(shape, arch)


def init_prior(arch, grouping):
  """γ(0) = ω(0) = 1 and everything kept (Algorithm 1 initialisation)."""
  if grouping not in GROUPINGS:
    raise ValueError(f"config.search.grouping: expected one of {GROUPINGS}, got "
                     f"{grouping!r}")
  def ones(a):
    return jnp.ones(a.shape[1:] if grouping == "cell_type" else a.shape, a.dtype)
  gamma = jax.tree_util.tree_map(ones, arch)
  return {"gamma": gamma, "omega": gamma,
          "keep": jax.tree_util.tree_map(lambda g: jnp.ones(g.shape, bool), gamma)}


def network_masks(keep, arch):
  """0/1 masks shaped like the architecture scalars (groups broadcast)."""
  return jax.tree_util.tree_map(lambda k, a: jnp.broadcast_to(k, a.shape).astype(a.dtype),
                                keep, arch)


@functools.partial(jax.jit, static_argnames=("spec", "lambda_w", "grouping", "dependency",
                                             "threshold"))
def hard_update(arch, curvature, state, *, spec, lambda_w: float, grouping: str,
                dependency: str, threshold: float = prior.PRUNE_THRESHOLD):
  """One prior update. Returns (new state, per-type record arrays, clamped count).

  `spec` is the `CellSpec` of every cell type, or a tuple of (type, CellSpec)
  pairs (`spaces.cell_specs(space)`). Record arrays per cell type and part: w,
  H (clamped), C per member; omega, switch, gamma, keep per group.
  """
  specs = dict(spec) if not isinstance(spec, CellSpec) else {kind: spec for kind in arch}
  new_state = {"gamma": {}, "omega": {}, "keep": {}}
  records = {}
  clamped = 0
  for kind in arch:
    spec = specs[kind]
    w = arch[kind]
    curv = {}
    for part in ("origin", "ops"):
      curv[part], count = prior.clamp_curvature(curvature[kind][part])
      clamped = clamped + count
    gamma = state["gamma"][kind]
    if grouping == "cell_type":
      upd = {part: prior.group_update(w[part], curv[part], gamma[part][None], lambda_w,
                                      axis=0) for part in ("origin", "ops")}
      g_origin, g_ops = prior.cell_gamma(upd["origin"].switch, upd["ops"].switch,
                                         spec.edges, spec.num_inputs, dependency)
    else:
      upd = {part: prior.update(w[part], curv[part], gamma[part], lambda_w)
             for part in ("origin", "ops")}
      g_origin, g_ops = jax.vmap(
          lambda s0, s: prior.cell_gamma(s0, s, spec.edges, spec.num_inputs, dependency)
      )(upd["origin"].switch, upd["ops"].switch)
    keep_origin = prior.keep_mask(g_origin, threshold) & state["keep"][kind]["origin"]
    keep_ops = prior.keep_mask(g_ops, threshold) & state["keep"][kind]["ops"]
    if grouping == "cell_type":
      keep_origin, keep_ops, _ = prior.cell_keep(keep_origin, keep_ops, spec.edges,
                                                 spec.num_inputs)
    else:
      keep_origin, keep_ops, _ = jax.vmap(
          lambda o, p: prior.cell_keep(o, p, spec.edges, spec.num_inputs))(keep_origin,
                                                                          keep_ops)
    gammas = {"origin": g_origin, "ops": g_ops}
    keeps = {"origin": keep_origin, "ops": keep_ops}
    for name in new_state:
      new_state[name][kind] = {}
    records[kind] = {}
    for part in ("origin", "ops"):
      new_state["gamma"][kind][part] = gammas[part]
      new_state["omega"][kind][part] = upd[part].omega
      new_state["keep"][kind][part] = keeps[part]
      records[kind][part] = {"w": w[part], "H": curv[part],
                             "C": upd[part].posterior_variance, "omega": upd[part].omega,
                             "s": upd[part].switch, "gamma": gammas[part],
                             "kept": keeps[part]}
  return new_state, records, clamped
