"""Timing shared by the benchmark scripts."""
import statistics
import time

import jax


def median_time(fn, args, repeats):
  """Median wall time of `fn(*args)` over `repeats` runs after one warm-up run,
  each waited for with `block_until_ready`."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)
