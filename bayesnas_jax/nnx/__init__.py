"""Flax NNX layers whose parameters carry curvature, architecture scalars as
their own variable type, and the curvature engine for NNX models.

Swap `from flax import nnx` layers for these (`bnx.Linear`, `bnx.Conv`,
`bnx.BatchNorm`: same arguments, parameters and values), hold architecture
scalars in `ArchScale` / `MixedOp` (`ArchParam` variables), and

    loss, grads, curvature = bnx.value_grad_curvature(loss_fn, model, x, y,
                                                      wrt=bnx.ArchParam)

gives the gradient and diagonal curvature of the scalars in one backward pass.
`docs/bring_your_own_model.md` has a whole search with `nnx.Optimizer` and the
HARD prior as optax transformations (`bayesnas_jax.hard_prior`).
"""
from bayesnas_jax.nnx.arch import ArchParam, ArchScale, MixedOp, arch_mask
from bayesnas_jax.nnx.curvature import value_grad_curvature
from bayesnas_jax.nnx.layers import BatchNorm, Conv, Linear

__all__ = ["ArchParam", "ArchScale", "BatchNorm", "Conv", "Linear", "MixedOp", "arch_mask",
           "value_grad_curvature"]
