"""Benchmark: one gradient step vs one gradient+curvature step (SPEC §5).

Builds a small DARTS-like CNN from `bayesnas_jax.nn` primitives (stem conv + BN,
normal and reduction cells whose edges are sums of candidate operations, each
scaled by an architecture scalar; separable and dilated depthwise convolutions,
max/avg pooling, BN without affine, global average pooling, dense, softmax
cross-entropy) on CIFAR-shaped random data, and measures side by side

* compile time of the jitted step (lower + compile),
* median and minimum wall time of one step (after a warm-up,
  `block_until_ready`; the two steps alternate, so that load from other
  processes hits both alike; the load average is recorded with the numbers),
* memory from XLA's `memory_analysis()` of the compiled step (temp, and total =
  arguments + outputs + temp − aliased), and on GPU the allocator's
  `peak_bytes_in_use`, each step measured in a fresh subprocess,

for `jax.value_and_grad(loss)` and `bayesnas_jax.value_grad_curvature(loss)`.
Prints one JSON object.

  python -m launch.bench_curvature --batch 64 --channels 16 --repeats 10
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time

IMPLS = ("auto", "lax", "shifted", "masked_dense")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--channels", type=int, default=16)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--depthwise_impl", choices=IMPLS, default="auto",
                      help="nn.conv2d impl= for the depthwise convolutions")
  parser.add_argument("--dtype", choices=("float32", "float64", "bfloat16"),
                      default="float32")
  parser.add_argument("--mode", choices=("hessian", "ggn"), default="hessian")
  parser.add_argument("--ops", default="sep_conv_3x3,dil_conv_3x3,max_pool_3x3,"
                      "avg_pool_3x3,skip_connect",
                      help="candidate operations on every edge (for ablations)")
  parser.add_argument("--compare_impls", action="store_true",
                      help="also time both steps with every depthwise impl")
  parser.add_argument("--dump_hlo", default="",
                      help="directory to write the optimised HLO of both steps")
  parser.add_argument("--peak_only", choices=("grad", "curvature"), default="",
                      help=argparse.SUPPRESS)  # internal: GPU peak in a subprocess
  return parser.parse_args(argv)


# ----------------------------------------------------------------------------
# The model.


def build(args):
  import jax
  import jax.numpy as jnp
  from bayesnas_jax import nn

  dtype = jnp.dtype(args.dtype)
  c = args.channels
  impl = args.depthwise_impl
  keys = iter(jax.random.split(jax.random.PRNGKey(0), 256))

  def he(shape, fan_in):
    return (jax.random.normal(next(keys), shape) * (2.0 / fan_in) ** 0.5).astype(dtype)

  def sep_params(cin, cout):
    return {"dw": he((3, 3, 1, cin), 9), "pw": he((1, 1, cin, cout), cin)}

  # Candidate operations of an edge: apply(params, x, stride).
  def op_sep(p, x, stride):
    h = nn.relu(x)
    h = nn.conv2d(h, p["dw"], stride=stride, groups=p["dw"].shape[-1], impl=impl)
    h = nn.conv2d(h, p["pw"])
    h = nn.batch_norm(h)
    # second half of a DARTS separable conv
    h = nn.relu(h)
    h = nn.conv2d(h, p["dw2"], groups=p["dw2"].shape[-1], impl=impl)
    h = nn.conv2d(h, p["pw2"])
    return nn.batch_norm(h)

  def op_dil(p, x, stride):
    h = nn.relu(x)
    h = nn.conv2d(h, p["dw"], stride=stride, dilation=2, groups=p["dw"].shape[-1],
                  impl=impl)
    h = nn.conv2d(h, p["pw"])
    return nn.batch_norm(h)

  def op_max(p, x, stride):
    del p
    return nn.batch_norm(nn.max_pool(x, 3, stride))

  def op_avg(p, x, stride):
    del p
    return nn.batch_norm(nn.avg_pool(x, 3, stride))

  def op_skip(p, x, stride):
    if stride == 1:
      return x
    h = nn.relu(x)
    return nn.batch_norm(nn.conv2d(h, p["pw"], stride=2))

  all_ops = {"sep_conv_3x3": op_sep, "dil_conv_3x3": op_dil, "max_pool_3x3": op_max,
             "avg_pool_3x3": op_avg, "skip_connect": op_skip}
  ops = {n: all_ops[n] for n in args.ops.split(",")}

  def op_params(name, cin, stride):
    if name == "sep_conv_3x3":
      p = sep_params(cin, cin)
      p.update({"dw2": he((3, 3, 1, cin), 9), "pw2": he((1, 1, cin, cin), cin)})
      return p
    if name == "dil_conv_3x3":
      return sep_params(cin, cin)
    if name == "skip_connect" and stride == 2:
      return {"pw": he((1, 1, cin, cin), cin)}
    return {}

  # Cells: each has `nodes` intermediate nodes; node j sums mixed edges from
  # the cell input and all earlier nodes; the cell output concatenates the
  # nodes and a 1x1 conv maps them to the next width.
  nodes = 2
  plan = [("normal", c, c), ("reduce", c, 2 * c), ("normal", 2 * c, 2 * c)]

  net = {"stem": {"w": he((3, 3, 3, c), 27), "scale": jnp.ones((c,), dtype),
                  "bias": jnp.zeros((c,), dtype)}, "cells": []}
  arch = {"cells": []}
  for kind, cin, cout in plan:
    cell_net, cell_arch = [], []
    for j in range(nodes):
      edges_net, edges_arch = [], []
      for i in range(j + 1):  # input 0 is the cell input, i > 0 earlier nodes
        stride = 2 if (kind == "reduce" and i == 0) else 1
        edges_net.append({n: op_params(n, cin, stride) for n in ops})
        edges_arch.append({n: jnp.asarray(1.0 / len(ops), dtype) for n in ops})
      cell_net.append(edges_net)
      cell_arch.append(edges_arch)
    net["cells"].append({"edges": cell_net,
                         "out": he((1, 1, nodes * cin, cout), nodes * cin)})
    arch["cells"].append(cell_arch)
  net["head"] = {"w": he((2 * c, args.classes), 2 * c),
                 "b": jnp.zeros((args.classes,), dtype)}
  params = {"net": net, "arch": arch}

  def mixed(edge_p, edge_a, x, stride):
    terms = [nn.scale(ops[n](edge_p[n], x, stride), edge_a[n]) for n in ops]
    return nn.add(*terms)

  def model(params, x):
    net, arch = params["net"], params["arch"]
    h = nn.conv2d(x, net["stem"]["w"])
    h = nn.batch_norm(h, net["stem"]["scale"], net["stem"]["bias"])
    for (kind, _, _), cell_p, cell_a in zip(plan, net["cells"], arch["cells"]):
      states = [h]
      for edges_p, edges_a in zip(cell_p["edges"], cell_a):
        terms = []
        for i, (ep, ea) in enumerate(zip(edges_p, edges_a)):
          stride = 2 if (kind == "reduce" and i == 0) else 1
          terms.append(mixed(ep, ea, states[i], stride))
        states.append(nn.add(*terms))
      h = nn.conv2d(nn.relu(nn.concat(states[1:])), cell_p["out"])
      h = nn.batch_norm(h)
    h = nn.global_avg_pool(h)
    return nn.dense(h, net["head"]["w"], net["head"]["b"])

  def loss(params, x, y):
    return nn.softmax_cross_entropy(model(params, x), y)

  dkey, lkey = jax.random.split(jax.random.PRNGKey(1))
  x = jax.random.normal(dkey, (args.batch, args.image_size, args.image_size, 3)
                        ).astype(dtype)
  y = jax.random.randint(lkey, (args.batch,), 0, args.classes)
  return loss, params, x, y


def steps(args, loss):
  import jax
  from bayesnas_jax import value_grad_curvature

  grad_step = jax.jit(jax.value_and_grad(loss))
  curv_step = jax.jit(lambda p, x, y: value_grad_curvature(loss, p, x, y,
                                                           mode=args.mode))
  return {"grad": grad_step, "curvature": curv_step}


# ----------------------------------------------------------------------------
# Measurements.


def compile_step(fn, *inputs):
  start = time.perf_counter()
  compiled = fn.lower(*inputs).compile()
  return compiled, time.perf_counter() - start


def time_steps(compiled, inputs, repeats):
  """Median and minimum wall time of each compiled step. The steps run in
  turn (a, b, a, b, ...) so that load from other processes hits both alike."""
  import jax
  for fn in compiled.values():
    jax.block_until_ready(fn(*inputs))  # warm-up
  times = {name: [] for name in compiled}
  for _ in range(repeats):
    for name, fn in compiled.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*inputs))
      times[name].append(time.perf_counter() - start)
  return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def xla_memory(compiled):
  analysis = compiled.memory_analysis()
  if analysis is None:
    return {}
  temp = int(analysis.temp_size_in_bytes)
  arg = int(analysis.argument_size_in_bytes)
  out = int(analysis.output_size_in_bytes)
  alias = int(getattr(analysis, "alias_size_in_bytes", 0))
  return {"temp_bytes": temp, "argument_bytes": arg, "output_bytes": out,
          "total_bytes": arg + out + temp - alias}


def gpu_peak(args, which):
  """`peak_bytes_in_use` of one step, run alone in a fresh process."""
  cmd = [sys.executable, "-m", "launch.bench_curvature", "--peak_only", which,
         "--batch", str(args.batch), "--channels", str(args.channels),
         "--image_size", str(args.image_size), "--classes", str(args.classes),
         "--depthwise_impl", args.depthwise_impl, "--dtype", args.dtype,
         "--mode", args.mode, "--ops", args.ops]
  out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
  return json.loads(out.strip().splitlines()[-1])["peak_bytes_in_use"]


def peak_only(args):
  import jax
  loss, params, x, y = build(args)
  fn = steps(args, loss)[args.peak_only]
  jax.block_until_ready(fn(params, x, y))
  stats = jax.devices()[0].memory_stats() or {}
  print(json.dumps({"peak_bytes_in_use": stats.get("peak_bytes_in_use")}))


def measure(args, loss, params, x, y, with_memory=True):
  inputs = (params, x, y)
  result, compiled = {}, {}
  for name, fn in steps(args, loss).items():
    compiled[name], compile_s = compile_step(fn, *inputs)
    entry = {"compile_s": compile_s}
    if with_memory:
      entry["memory"] = xla_memory(compiled[name])
    if args.dump_hlo:
      import os
      os.makedirs(args.dump_hlo, exist_ok=True)
      with open(os.path.join(args.dump_hlo, f"{name}_{args.depthwise_impl}.hlo"),
                "w") as f:
        f.write(compiled[name].as_text())
    result[name] = entry
  for name, (median_s, min_s) in time_steps(compiled, inputs, args.repeats).items():
    result[name].update(step_s=median_s, step_min_s=min_s)
  return result


def cpu_model():
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def main(argv=None):
  args = parse_args(argv)
  import jax
  if args.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  if args.peak_only:
    return peak_only(args)

  import os
  load_before = os.getloadavg()[0]
  loss, params, x, y = build(args)
  device = jax.devices()[0]
  on_gpu = device.platform == "gpu"
  res = measure(args, loss, params, x, y)
  g, c = res["grad"], res["curvature"]
  if on_gpu:
    g["memory"]["peak_bytes_in_use"] = gpu_peak(args, "grad")
    c["memory"]["peak_bytes_in_use"] = gpu_peak(args, "curvature")

  def ratio(a, b):
    return a / b if b else None

  n_params = sum(v.size for v in jax.tree_util.tree_leaves(params["net"]))
  n_arch = len(jax.tree_util.tree_leaves(params["arch"]))
  if device.platform == "cpu":
    device_name = f"cpu: {cpu_model()} ({os.cpu_count()} cores)"
  else:
    device_name = f"{device.platform}: {device.device_kind}"
  out = {
      "device": device_name,
      "jax": jax.__version__,
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "batch": args.batch, "channels": args.channels, "image_size": args.image_size,
      "dtype": args.dtype, "mode": args.mode, "depthwise_impl": args.depthwise_impl,
      "ops": args.ops.split(","),
      "repeats": args.repeats, "weights": int(n_params), "arch_scalars": n_arch,
      "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
      "compile_s": {"grad": g["compile_s"], "curvature": c["compile_s"]},
      "step_s": {"grad": g["step_s"], "curvature": c["step_s"]},
      "step_min_s": {"grad": g["step_min_s"], "curvature": c["step_min_s"]},
      "ratio": ratio(c["step_s"], g["step_s"]),
      "ratio_of_min": ratio(c["step_min_s"], g["step_min_s"]),
      "memory": {"grad": g["memory"], "curvature": c["memory"]},
      "memory_ratio": {k: ratio(c["memory"][k], g["memory"][k])
                       for k in g["memory"] if k in c["memory"]},
  }
  if args.compare_impls:
    by_impl = {}
    for impl in IMPLS[1:]:
      sub = argparse.Namespace(**{**vars(args), "depthwise_impl": impl,
                                  "dump_hlo": ""})
      sl, sp, sx, sy = build(sub)
      r = measure(sub, sl, sp, sx, sy, with_memory=True)
      by_impl[impl] = {
          "step_s": {"grad": r["grad"]["step_s"], "curvature": r["curvature"]["step_s"]},
          "compile_s": {"grad": r["grad"]["compile_s"],
                        "curvature": r["curvature"]["compile_s"]},
          "ratio": ratio(r["curvature"]["step_s"], r["grad"]["step_s"]),
          "memory_ratio_total": ratio(r["curvature"]["memory"].get("total_bytes"),
                                      r["grad"]["memory"].get("total_bytes")),
      }
    out["by_impl"] = by_impl
  print(json.dumps(out, indent=1))
  return out


if __name__ == "__main__":
  main()
