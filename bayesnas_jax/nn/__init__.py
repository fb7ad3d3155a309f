"""Pure-function primitives with custom-VJP curvature rules (SPEC §5).

Every primitive takes plain arrays (ordinary JAX, for training) or
:class:`Probed` tensors (inside :func:`bayesnas_jax.curvature.value_grad_curvature`),
so one model function serves both.
"""
from bayesnas_jax.nn.activations import identity, relu, sigmoid, tanh
from bayesnas_jax.nn.layers import (batch_norm, conv2d, dense, layer_norm, moments,
                                    normalize, scale)
from bayesnas_jax.nn.losses import mean_squared_error, softmax_cross_entropy
from bayesnas_jax.nn.pooling import add, avg_pool, concat, global_avg_pool, max_pool
from bayesnas_jax.nn.probe import (Probed, as_probed, is_probed, mode_of, structural,
                                   value_of)
from bayesnas_jax.nn.rules import Elementwise, bilinear, elementwise, routing

__all__ = [
    "Elementwise", "Probed", "add", "as_probed", "avg_pool", "batch_norm", "bilinear", "concat",
    "conv2d", "dense", "elementwise", "global_avg_pool", "identity", "is_probed",
    "layer_norm", "max_pool", "mean_squared_error", "mode_of", "moments", "normalize", "relu",
    "routing", "scale", "sigmoid", "softmax_cross_entropy", "structural", "tanh",
    "value_of",
]
