"""Flax (linen) layers whose parameters carry curvature (`bayesnas_jax.flax.layers`)."""
from bayesnas_jax.flax.layers import ARCH, ArchScale, BatchNorm, Conv, Dense, MixedOp

__all__ = ["ARCH", "ArchScale", "BatchNorm", "Conv", "Dense", "MixedOp"]
