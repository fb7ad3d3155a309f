"""A plain float64 numpy reference of the diagonal curvature recursion (SPEC §5).

Independent of JAX and of `bayesnas_jax`: every primitive is a small class with
`forward(inputs, params)` and `backward(grad, curv)`, written out by hand. The
backward pass returns, for each input and each parameter, the gradient and the
diagonal curvature H, propagated per example and per spatial position with the
off-diagonal terms dropped (thesis (T) eqs. 4-9, 4-10):

* a linear map y = Σ c·x sends H_x = Σ c² H_y (and H_c = Σ x² H_y for a weight);
* an element-wise a = σ(z) sends H_z = σ'(z)² H_a, plus σ''(z)·∂L/∂a in mode
  "hessian" (not in "ggn");
* batch norm: exact gradient through the batch statistics, curvature through the
  fixed map H_x = H_y / (var + eps) (biased variance);
* max pool routes g and H to the arg-max; sums pass H to every summand.

A network is a list of :func:`node` records; :func:`run` evaluates the loss,
the gradients and the curvature of every parameter.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

# ----------------------------------------------------------------------------
# Graph records.


class Node(NamedTuple):
  name: str
  kind: str
  inputs: tuple
  params: tuple
  opts: dict


def node(name, kind, inputs, params=(), **opts):
  """A graph node: `kind` applied to earlier nodes (or "x") and named parameters."""
  return Node(name, kind, tuple(inputs), tuple(params), dict(opts))


# ----------------------------------------------------------------------------
# Helpers.


def same_pads(size, kernel, stride, dilation=1):
  """(low, high) padding of the SAME convention: low = total // 2, high = rest."""
  effective = (kernel - 1) * dilation + 1
  out = -(-size // stride)
  total = max((out - 1) * stride + effective - size, 0)
  return out, total // 2, total - total // 2


def windows(x, kernel, stride, dilation, fill):
  """Patches [N, OH, OW, k, k, C] of the SAME-padded x (padding = `fill`), and the
  matching in-image mask [OH, OW, k, k]."""
  n, height, width, channels = x.shape
  out_h, low_h, high_h = same_pads(height, kernel, stride, dilation)
  out_w, low_w, high_w = same_pads(width, kernel, stride, dilation)
  padded = np.full((n, height + low_h + high_h, width + low_w + high_w, channels), fill)
  padded[:, low_h:low_h + height, low_w:low_w + width] = x
  inside = np.zeros(padded.shape[1:3])
  inside[low_h:low_h + height, low_w:low_w + width] = 1.0
  patches = np.zeros((n, out_h, out_w, kernel, kernel, channels))
  mask = np.zeros((out_h, out_w, kernel, kernel))
  for oh in range(out_h):
    for ow in range(out_w):
      for i in range(kernel):
        for j in range(kernel):
          r, c = oh * stride + i * dilation, ow * stride + j * dilation
          patches[:, oh, ow, i, j] = padded[:, r, c]
          mask[oh, ow, i, j] = inside[r, c]
  return patches, mask


def unwindow(cols, x_shape, kernel, stride, dilation):
  """The transpose of `windows` (col2im): adds every patch entry back into x."""
  n, height, width, channels = x_shape
  _, low_h, high_h = same_pads(height, kernel, stride, dilation)
  _, low_w, high_w = same_pads(width, kernel, stride, dilation)
  padded = np.zeros((n, height + low_h + high_h, width + low_w + high_w, channels))
  for oh in range(cols.shape[1]):
    for ow in range(cols.shape[2]):
      for i in range(kernel):
        for j in range(kernel):
          padded[:, oh * stride + i * dilation, ow * stride + j * dilation] += cols[:, oh, ow, i, j]
  return padded[:, low_h:low_h + height, low_w:low_w + width]


def reduce_to(a, shape):
  """Sums the broadcast axes of `a` away so that it has `shape` (right-aligned)."""
  while a.ndim > len(shape):
    a = a.sum(axis=0)
  for axis, size in enumerate(shape):
    if size == 1 and a.shape[axis] != 1:
      a = a.sum(axis=axis, keepdims=True)
  return a


# ----------------------------------------------------------------------------
# Layers. backward returns ([(g, H) per input], [(g, H) per parameter]).


class Dense:
  """y = x W (+ b); x [..., in]."""

  def forward(self, xs, ps):
    self.x, self.w = xs[0], ps[0]
    self.bias = len(ps) > 1
    y = self.x @ self.w
    return y + ps[1] if self.bias else y

  def backward(self, g, h):
    rows = lambda t: t.reshape(-1, t.shape[-1])  # one row per example (and position)
    x, g_rows, h_rows = rows(self.x), rows(g), rows(h)
    params = [(x.T @ g_rows, (x ** 2).T @ h_rows)]
    if self.bias:
      params.append((g_rows.sum(0), h_rows.sum(0)))
    return [(g @ self.w.T, h @ (self.w ** 2).T)], params


class Conv2d:
  """SAME conv, x NHWC, w HWIO [k, k, C/groups, O], by explicit im2col per group."""

  def __init__(self, stride=1, dilation=1, groups=1, impl=None):
    del impl  # every implementation computes the same map
    self.stride, self.dilation, self.groups = stride, dilation, groups

  def _group_slices(self):
    cin, cout = self.w.shape[2], self.w.shape[3] // self.groups
    return [(slice(k * cin, (k + 1) * cin), slice(k * cout, (k + 1) * cout))
            for k in range(self.groups)]

  def forward(self, xs, ps):
    self.x, self.w = xs[0], ps[0]
    self.bias = len(ps) > 1
    k = self.w.shape[0]
    self.cols, _ = windows(self.x, k, self.stride, self.dilation, 0.0)
    n, out_h, out_w = self.cols.shape[:3]
    y = np.zeros((n, out_h, out_w, self.w.shape[3]))
    for c_in, c_out in self._group_slices():
      y[..., c_out] = np.einsum("nabijc,ijco->nabo", self.cols[..., c_in], self.w[..., c_out])
    return y + ps[1] if self.bias else y

  def backward(self, g, h):
    k = self.w.shape[0]
    grad_cols, curv_cols = np.zeros_like(self.cols), np.zeros_like(self.cols)
    grad_w, curv_w = np.zeros_like(self.w), np.zeros_like(self.w)
    for c_in, c_out in self._group_slices():
      cols, w = self.cols[..., c_in], self.w[..., c_out]
      grad_cols[..., c_in] = np.einsum("nabo,ijco->nabijc", g[..., c_out], w)
      curv_cols[..., c_in] = np.einsum("nabo,ijco->nabijc", h[..., c_out], w ** 2)
      grad_w[..., c_out] = np.einsum("nabijc,nabo->ijco", cols, g[..., c_out])
      curv_w[..., c_out] = np.einsum("nabijc,nabo->ijco", cols ** 2, h[..., c_out])
    args = (self.x.shape, k, self.stride, self.dilation)
    inputs = [(unwindow(grad_cols, *args), unwindow(curv_cols, *args))]
    params = [(grad_w, curv_w)]
    if self.bias:
      params.append((g.sum((0, 1, 2)), h.sum((0, 1, 2))))
    return inputs, params


class Scale:
  """y = a·x, a an architecture scalar (or any broadcastable array)."""

  def forward(self, xs, ps):
    self.x, self.a = xs[0], ps[0]
    return self.a * self.x

  def backward(self, g, h):
    shape = np.shape(self.a)
    return ([(self.a * g, self.a ** 2 * h)],
            [(reduce_to(self.x * g, shape), reduce_to(self.x ** 2 * h, shape))])


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


# σ, σ', σ'' for each activation.
DERIVATIVES = {
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0, lambda z: 0 * z),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2,
             lambda z: -2 * np.tanh(z) * (1 - np.tanh(z) ** 2)),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z)),
                lambda z: _sigmoid(z) * (1 - _sigmoid(z)) * (1 - 2 * _sigmoid(z))),
    "identity": (lambda z: z, lambda z: 1 + 0 * z, lambda z: 0 * z),
}


class Activation:

  def __init__(self, fn, mode):
    self.fn, self.mode = fn, mode

  def forward(self, xs, ps):
    self.z = xs[0]
    return DERIVATIVES[self.fn][0](self.z)

  def backward(self, g, h):
    _, first, second = DERIVATIVES[self.fn]
    curv = first(self.z) ** 2 * h
    if self.mode == "hessian":
      curv = curv + second(self.z) * g
    return [(first(self.z) * g, curv)], []


class BatchNorm:
  """Batch statistics over all axes but channels; optional affine (scale, bias)."""

  def __init__(self, eps=1e-5):
    self.eps = eps

  def forward(self, xs, ps):
    x = xs[0]
    self.axes = tuple(range(x.ndim - 1))
    mean = x.mean(self.axes, keepdims=True)
    self.var = ((x - mean) ** 2).mean(self.axes, keepdims=True)  # biased
    self.xhat = (x - mean) / np.sqrt(self.var + self.eps)
    self.affine = list(ps)
    if self.affine:
      return self.xhat * ps[0] + ps[1]
    return self.xhat

  def backward(self, g, h):
    params = []
    if self.affine:
      gamma = self.affine[0]
      params = [((g * self.xhat).sum(self.axes), (h * self.xhat ** 2).sum(self.axes)),
                (g.sum(self.axes), h.sum(self.axes))]
      g, h = g * gamma, h * gamma ** 2
    mean_g = g.mean(self.axes, keepdims=True)
    mean_gx = (g * self.xhat).mean(self.axes, keepdims=True)
    grad = (g - mean_g - self.xhat * mean_gx) / np.sqrt(self.var + self.eps)
    return [(grad, h / (self.var + self.eps))], params


class AvgPool:
  """k×k SAME average that counts only in-image entries (count_include_pad=False)."""

  def __init__(self, window=3, stride=1):
    self.k, self.stride = window, stride

  def forward(self, xs, ps):
    self.shape = xs[0].shape
    cols, mask = windows(xs[0], self.k, self.stride, 1, 0.0)
    self.weight = mask / mask.sum((2, 3), keepdims=True)  # [OH, OW, k, k]
    return np.einsum("nabijc,abij->nabc", cols, self.weight)

  def backward(self, g, h):
    args = (self.shape, self.k, self.stride, 1)
    grad = unwindow(np.einsum("nabc,abij->nabijc", g, self.weight), *args)
    curv = unwindow(np.einsum("nabc,abij->nabijc", h, self.weight ** 2), *args)
    return [(grad, curv)], []


class MaxPool:
  """k×k SAME max (padding never wins); g and H both go to the arg-max."""

  def __init__(self, window=3, stride=1):
    self.k, self.stride = window, stride

  def forward(self, xs, ps):
    self.shape = xs[0].shape
    cols, _ = windows(xs[0], self.k, self.stride, 1, -np.inf)
    n, out_h, out_w, _, _, c = cols.shape
    flat = cols.reshape(n, out_h, out_w, -1, c)
    self.onehot = (np.arange(flat.shape[3])[:, None] == flat.argmax(3)[..., None, :]) * 1.0
    self.onehot = self.onehot.reshape(cols.shape)
    return flat.max(3)

  def backward(self, g, h):
    args = (self.shape, self.k, self.stride, 1)
    route = lambda t: unwindow(self.onehot * t[:, :, :, None, None, :], *args)
    return [(route(g), route(h))], []


class GlobalAvgPool:

  def forward(self, xs, ps):
    self.shape = xs[0].shape
    return xs[0].mean((1, 2))

  def backward(self, g, h):
    area = self.shape[1] * self.shape[2]
    spread = lambda t: np.broadcast_to(t[:, None, None, :], self.shape)
    return [(spread(g) / area, spread(h) / area ** 2)], []


class Concat:

  def forward(self, xs, ps):
    self.sizes = [x.shape[-1] for x in xs]
    return np.concatenate(xs, axis=-1)

  def backward(self, g, h):
    cuts = np.cumsum(self.sizes)[:-1]
    return list(zip(np.split(g, cuts, -1), np.split(h, cuts, -1))), []


class Add:

  def forward(self, xs, ps):
    self.count = len(xs)
    return sum(xs)

  def backward(self, g, h):
    return [(g, h)] * self.count, []


def make_layer(kind, mode, opts):
  if kind in DERIVATIVES:
    return Activation(kind, mode)
  classes = {"dense": Dense, "conv": Conv2d, "scale": Scale, "bn": BatchNorm,
             "avg_pool": AvgPool, "max_pool": MaxPool, "gap": GlobalAvgPool,
             "concat": Concat, "add": Add}
  return classes[kind](**opts)


# ----------------------------------------------------------------------------
# Losses: (value, gradient, curvature seed) of the prediction.


def softmax_cross_entropy(logits, labels):
  """Mean over the batch; seed H = (p − p²)/B (diagonal of the softmax Hessian)."""
  shifted = logits - logits.max(-1, keepdims=True)
  p = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
  batch = logits.shape[0]
  onehot = np.eye(logits.shape[-1])[labels]
  value = -np.mean(np.log((p * onehot).sum(-1)))
  return value, (p - onehot) / batch, (p - p ** 2) / batch


def mean_squared_error(pred, target):
  """Mean over all N entries; seed H = 2/N."""
  size = pred.size
  return (np.mean((pred - target) ** 2), 2 * (pred - target) / size,
          np.full(pred.shape, 2.0 / size))


LOSSES = {"ce": softmax_cross_entropy, "mse": mean_squared_error}


def run(nodes, params, x, target, loss, mode="hessian"):
  """Loss, gradients and diagonal curvature of every parameter of the graph.

  `nodes` are :func:`node` records read in order, the last one being the
  prediction; `loss` is "ce" or "mse". Fan-out sums gradients and curvatures.
  """
  params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  values = {"x": np.asarray(x, np.float64)}
  layers = {}
  for nd in nodes:
    layers[nd.name] = make_layer(nd.kind, mode, nd.opts)
    values[nd.name] = layers[nd.name].forward([values[i] for i in nd.inputs],
                                              [params[p] for p in nd.params])
  value, g, h = LOSSES[loss](values[nodes[-1].name], np.asarray(target))
  grads = {k: np.zeros_like(v) for k, v in params.items()}
  curvs = {k: np.zeros_like(v) for k, v in params.items()}
  node_grads = {name: 0.0 for name in values}
  node_curvs = {name: 0.0 for name in values}
  node_grads[nodes[-1].name], node_curvs[nodes[-1].name] = g, h
  for nd in reversed(nodes):
    inputs, parts = layers[nd.name].backward(node_grads[nd.name], node_curvs[nd.name])
    for name, (g_in, h_in) in zip(nd.inputs, inputs):
      node_grads[name] = node_grads[name] + g_in
      node_curvs[name] = node_curvs[name] + h_in
    for name, (g_p, h_p) in zip(nd.params, parts):
      grads[name] = grads[name] + g_p
      curvs[name] = curvs[name] + h_p
  return value, grads, curvs
