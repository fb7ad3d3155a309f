"""bayesnas_jax: Bayesian one-shot neural architecture search (BayesNAS) in JAX."""
from bayesnas_jax import nn
from bayesnas_jax.curvature import exact_diagonal, value_grad_curvature

__version__ = "0.1.0"
__all__ = ["exact_diagonal", "nn", "value_grad_curvature"]
