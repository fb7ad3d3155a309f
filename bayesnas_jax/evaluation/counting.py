"""Parameters and multiply-accumulates of an evaluation network, computed from it.

* parameter_count: the number of trainable entries (conv and dense kernels, biases,
  BN scale and bias; not the BN running statistics), without the auxiliary head by
  default — what DARTS and BayesNAS report as "params".
* flops_per_image: multiply-accumulates (MACs, DARTS' "multiply-add operations")
  of one image through the network at inference (no auxiliary head): the forward
  pass is traced to a jaxpr at batch 1 and every convolution and dot product in it
  is counted from its shapes,
    conv:  MACs = |output| · k_h · k_w · C_in / groups,
    dot:   MACs = |output| · Π contracted dims.
  BN, activations, pooling and additions are not counted (the usual convention).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax.evaluation import darts_network


def _prod(dims):
  return int(np.prod(np.asarray(dims, np.int64)))


def parameter_count(params, exclude_auxiliary=True) -> int:
  """Entries of the params pytree (arrays or ShapeDtypeStructs)."""
  if exclude_auxiliary and isinstance(params, dict):
    params = {k: v for k, v in params.items() if k != "auxiliary"}
  return sum(_prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def _sub_jaxprs(value):
  """Jaxprs inside an equation parameter (call, custom_vjp, pjit, cond, ...)."""
  if hasattr(value, "eqns"):
    yield value
  elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for item in value:
      yield from _sub_jaxprs(item)


def _eqn_macs(eqn) -> int:
  name = eqn.primitive.name
  if name == "conv_general_dilated":
    out = _prod(eqn.outvars[0].aval.shape)
    rhs = eqn.invars[1].aval.shape
    out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
    return out * _prod(rhs) // out_features
  if name == "dot_general":
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return _prod(eqn.outvars[0].aval.shape) * _prod([lhs[d] for d in lhs_contract])
  return 0


def jaxpr_macs(jaxpr) -> int:
  """Multiply-accumulates of every conv and dot product in a jaxpr, recursively."""
  total = 0
  for eqn in jaxpr.eqns:
    total += _eqn_macs(eqn)
    for value in eqn.params.values():
      for sub in _sub_jaxprs(value):
        total += jaxpr_macs(sub)
  return total


def _as_dict(config):
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def abstract_network(genotype, config, net=darts_network):
  """(params, batch_stats) as ShapeDtypeStructs: no memory, no compilation.
  `net` is the network's module (or any object with its `init` and `apply`)."""
  return jax.eval_shape(lambda key: net.init(key, genotype, config),
                        jax.random.PRNGKey(0))


def flops_per_image(genotype, config, net=darts_network) -> int:
  """MACs of one config["image_size"]² image at inference (see module docstring)."""
  # Depthwise convs traced as grouped convolutions so that they appear as such.
  model = {**_as_dict(config), "depthwise_impl": "lax"}
  params, stats = abstract_network(genotype, model, net)
  size = model["image_size"]
  images = jax.ShapeDtypeStruct((1, size, size, model.get("in_channels", 3)), jnp.float32)

  def logits(p, s, x):
    return net.apply(p, s, x, genotype, model, train=False)[0]

  return jaxpr_macs(jax.make_jaxpr(logits)(params, stats, images).jaxpr)
