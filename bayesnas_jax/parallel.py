"""Data parallelism over every device of every host with `jax.sharding`.

A one-axis mesh ("data") over all devices: batches are split along it and the
training state is replicated; `jax.jit` then partitions each step and reduces
gradients, curvature, batch-norm statistics and metrics across devices. On
several hosts each process feeds its own rows of the global batch (after
`jax.distributed.initialize`, see `bayesnas_jax.launcher`).
"""
from __future__ import annotations

import jax


def data_parallel(batch_size, field="config.input.batch_size"):
  """(batch sharding, replicated sharding) over a mesh of all devices."""
  devices = jax.device_count()
  if batch_size % devices:
    raise ValueError(f"{field}: {batch_size} must be a multiple of the {devices} devices")
  mesh = jax.make_mesh((devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  return (jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")),
          jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def global_batch(batch, sharding):
  """This host's rows of the global batch → arrays sharded over all devices."""
  hosts, host = jax.process_count(), jax.process_index()
  rows = batch["label"].shape[0] // hosts
  local = {k: v[host * rows:(host + 1) * rows] for k, v in batch.items()}
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
