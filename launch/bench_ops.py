"""Benchmark of the supernet's hot ops, every implementation side by side.

  python -m launch.bench_ops [--batch 64] [--channels 16] [--edges 5] [--repeats 10]

For the folded layout of the search network (E edges of C channels at each
resolution of the 8-cell network: 32², 16², 8² with C, 2C, 4C) it times one
jitted forward + backward pass (gradients with respect to input and weights)
of

* the 1×1 convolution of E edges: `edge_major` (the library's
  `spaces.ops.pointwise`: one batched matmul with the edge axis leading),
  `einsum` (edge axis kept in the middle) and `block_diagonal` (one dense
  [E·C, E·C] kernel, E× the multiply-adds);
* the 3×3 depthwise convolution of E·C channels by each `nn.conv2d` impl
  (`shifted`, `masked_dense`, `lax` grouped).

Prints one JSON object: per resolution and op, the median step time of each
implementation and its ratio to the fastest, measured in one run on the
default device. Use it to pick `space.depthwise_impl` on a new device.
"""
from __future__ import annotations

import argparse
import datetime
import json

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax.nn import conv as conv_lib
from bayesnas_jax.spaces import ops
from launch.timing import median_time


def _block_diagonal(x, w):
  e, c, d = w.shape
  kernel = jnp.einsum("ecd,ef->ecfd", w, jnp.eye(e, dtype=w.dtype)).reshape(e * c, e * d)
  return x @ kernel


def _einsum(x, w):
  e, c, d = w.shape
  lead = x.shape[:-1]
  return jnp.einsum("...ec,ecd->...ed", x.reshape(lead + (e, c)), w).reshape(lead + (e * d,))


def _compare(candidates, args, repeats):
  """{name: seconds} for jitted fwd+bwd of each candidate, plus ratios."""
  times = {}
  for name, f in candidates.items():
    step = jax.jit(jax.grad(lambda x, w, f=f: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
    times[name] = median_time(step, args, repeats)
  best = min(times.values())
  return {name: {"step_s": round(t, 6), "vs_fastest": round(t / best, 3)}
          for name, t in times.items()}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--channels", type=int, default=16)
  parser.add_argument("--edges", type=int, default=5)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args(argv)
  rng = np.random.default_rng(0)
  results = {}
  for level in range(3):
    size, c, e = args.image_size >> level, args.channels << level, args.edges
    x = jnp.asarray(rng.standard_normal((args.batch, size, size, e * c)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((e, c, c)), jnp.float32)
    dw = jnp.asarray(rng.standard_normal((3, 3, 1, e * c)), jnp.float32)
    pointwise = _compare({"edge_major": ops.pointwise, "einsum": _einsum,
                          "block_diagonal": _block_diagonal}, (x, w), args.repeats)
    depthwise = _compare(
        {impl: (lambda x, k, impl=impl: conv_lib.conv(x, k, groups=x.shape[-1], impl=impl))
         for impl in ("shifted", "masked_dense", "lax")}, (x, dw), args.repeats)
    results[f"{size}x{size}x{e}x{c}"] = {"pointwise_1x1": pointwise, "depthwise_3x3": depthwise}
  device = jax.devices()[0]
  print(json.dumps({"device": f"{device.platform}:{device.device_kind}",
                    "date": datetime.date.today().isoformat(), "batch": args.batch,
                    "results": results}, indent=1))


if __name__ == "__main__":
  main()
