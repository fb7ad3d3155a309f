"""The recurrent cell space: values and gradients against a step-by-step
reference, curvature through time against an independent float64 reference of
the same diagonal recursion ((R) eqs. 4.13–4.21), and the horizon τ."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import nn, value_grad_curvature
from bayesnas_jax.spaces import rnn


T, B, N_IN, N_HID, K, NODES = 4, 3, 2, 3, 5, 2


def _sig(z):
  return 1 / (1 + np.exp(-z))


# activation: (f, f', f'') as numpy functions of the pre-activation.
ACT = {
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2,
             lambda z: -2 * np.tanh(z) * (1 - np.tanh(z) ** 2)),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0, lambda z: 0 * z),
    "sigmoid": (_sig, lambda z: _sig(z) * (1 - _sig(z)),
                lambda z: _sig(z) * (1 - _sig(z)) * (1 - 2 * _sig(z))),
    "identity": (lambda z: z, lambda z: 1 + 0 * z, lambda z: 0 * z),
}
OPS = rnn.RNN_OPS


def _case():
  keys = jax.random.split(jax.random.key(0), 5)
  spec = rnn.cell_spec(NODES)
  cell = jax.tree.map(lambda a: 8.0 * a, rnn.init_cell(keys[0], N_IN, N_HID, NODES))
  arch = {"rnn": {"origin": 0.5 + jax.random.uniform(keys[1], (1, spec.num_edges)),
                  "ops": 0.5 + jax.random.uniform(keys[2], (1, spec.num_edges, len(OPS)))}}
  params = {"cell": cell, "arch": arch, "V": jax.random.normal(keys[3], (N_HID, K))}
  params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(T, B, N_IN))
  h0 = rng.normal(size=(B, N_HID)) * 0.5
  labels = rng.integers(0, K, size=(T, B))
  return spec, params, x, h0, labels


def _library_loss(spec, x, h0, labels, horizon=0, norm="none", origin="output"):
  def loss(p):
    out, _ = rnn.unroll(p["cell"], p["arch"]["rnn"], x, h0, spec, norm=norm, origin=origin,
                        horizon=horizon)
    return nn.softmax_cross_entropy(nn.dense(out, p["V"]), labels)
  return loss


# ---------------------------------------------------------------------------
# The reference: plain loops over time steps, nodes, edges and ops, written
# without the library. `eps` adds zero to every activation output so that
# jax.grad gives the gradient there (the σ''·∂L/∂a term of Hessian mode).


def _reference_forward(p, x, h0, labels, eps=None, keep=None):
  w0, ws = p["cell"]["W0"], p["cell"]["Ws"]
  origin, ops = p["arch"]["rnn"]["origin"][0], p["arch"]["rnn"]["ops"][0]
  sig = jax.nn.sigmoid
  fns = {"tanh": jnp.tanh, "relu": jax.nn.relu, "sigmoid": sig, "identity": lambda z: z}

  def act(name, f, z):
    a = f(z)
    if keep is not None:
      keep[name] = (z, a)
    return a + (eps[name] if eps is not None else 0.0)

  h, total = h0, 0.0
  for t in range(T):
    xh = jnp.concatenate([x[t], h], -1)
    ch = xh @ w0
    c, g = ch[:, :N_HID], ch[:, N_HID:]
    sp, sn = act((t, 0, 0, "sp"), sig, c), act((t, 0, 0, "sn"), sig, -c)
    states = [sn * h + sp * act((t, 0, 0, "tanh"), jnp.tanh, g)]
    if keep is not None:
      keep[(t, "xh")], keep[(t, "h")] = xh, h
    edge = 0
    for k in range(1, NODES + 1):
      node = 0.0
      for j in range(k):
        ch = states[j] @ ws[k - 1]
        c, g = ch[:, :N_HID], ch[:, N_HID:]
        sp, sn = act((t, k, j, "sp"), sig, c), act((t, k, j, "sn"), sig, -c)
        m = 0.0
        for o, op in enumerate(OPS):
          m = m + ops[edge, o] * (sn * states[j] + sp * act((t, k, j, op), fns[op], g))
        node = node + origin[edge] * m
        edge += 1
      states.append(node)
    if keep is not None:
      keep[(t, "states")] = states
    h = sum(states[1:]) / NODES
    logits = h @ p["V"]
    if keep is not None:
      keep[(t, "out")], keep[(t, "logits")] = h, logits
    total = total + jnp.sum(-jax.nn.log_softmax(logits)[jnp.arange(B), labels[t]])
  return total / (T * B)


def _reference_curvature(p, x, h0, labels, mode, horizon):
  keep = {}
  _reference_forward(p, x, h0, labels, keep=keep)
  eps = {name: jnp.zeros_like(v[1]) for name, v in keep.items() if len(name) == 4}
  grad_at = jax.grad(lambda e: _reference_forward(p, x, h0, labels, eps=e))(eps)
  grad_at = {name: np.asarray(v) for name, v in grad_at.items()}
  keep = {name: (tuple(np.asarray(u) for u in v) if isinstance(v, tuple) else
                 [np.asarray(u) for u in v] if isinstance(v, list) else np.asarray(v))
          for name, v in keep.items()}
  w0, ws = p["cell"]["W0"], p["cell"]["Ws"]
  origin, ops = p["arch"]["rnn"]["origin"][0], p["arch"]["rnn"]["ops"][0]
  out = {"W0": np.zeros_like(w0), "Ws": np.zeros_like(ws), "V": np.zeros_like(p["V"]),
         "origin": np.zeros_like(origin), "ops": np.zeros_like(ops)}

  def through(name, kind, h_a):
    """H of the pre-activation from H of the activation output (eq. 4-10)."""
    z, _ = keep[name]
    _, d1, d2 = ACT[kind]
    h_z = d1(z) ** 2 * h_a
    if mode == "hessian":
      h_z = h_z + d2(z) * grad_at[name]
    return h_z

  carried = np.zeros((B, N_HID))
  for t in reversed(range(T)):
    logits = keep[(t, "logits")]
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    h_logits = (prob - prob ** 2) / (T * B)
    out["V"] += keep[(t, "out")].T ** 2 @ h_logits
    h_out = h_logits @ (p["V"] ** 2).T + carried
    states = keep[(t, "states")]
    h_states = [np.zeros((B, N_HID)) for _ in states]
    for k in range(1, NODES + 1):
      h_states[k] += h_out / NODES ** 2
    edges = [(j, k) for k in range(1, NODES + 1) for j in range(k)]
    for k in reversed(range(1, NODES + 1)):
      h_node = h_states[k]
      for j in range(k):
        e = edges.index((j, k))
        s = states[j]
        _, sp = keep[(t, k, j, "sp")]
        _, sn = keep[(t, k, j, "sn")]
        ys = [sn * s + sp * keep[(t, k, j, op)][1] for op in OPS]
        m = sum(ops[e, o] * ys[o] for o in range(len(OPS)))
        out["origin"][e] += np.sum(m ** 2 * h_node)
        h_m = origin[e] ** 2 * h_node
        h_sp = h_sn = h_g = 0.0
        for o, op in enumerate(OPS):
          out["ops"][e, o] += np.sum(ys[o] ** 2 * h_m)
          h_y = ops[e, o] ** 2 * h_m
          h_states[j] = h_states[j] + sn ** 2 * h_y
          h_sn = h_sn + s ** 2 * h_y
          h_sp = h_sp + keep[(t, k, j, op)][1] ** 2 * h_y
          h_g = h_g + through((t, k, j, op), op, sp ** 2 * h_y)
        h_c = through((t, k, j, "sp"), "sigmoid", h_sp) + through((t, k, j, "sn"), "sigmoid", h_sn)
        h_ch = np.concatenate([h_c, h_g], -1)
        h_states[j] = h_states[j] + h_ch @ (ws[k - 1] ** 2).T
        out["Ws"][k - 1] += s.T ** 2 @ h_ch
    # node 0: s_0 = σ(−c)·h + σ(c)·tanh(g), [c, g] = [x, h] W0
    h_s0, h_prev = h_states[0], keep[(t, "h")]
    _, sp = keep[(t, 0, 0, "sp")]
    _, sn = keep[(t, 0, 0, "sn")]
    _, tg = keep[(t, 0, 0, "tanh")]
    h_c = (through((t, 0, 0, "sp"), "sigmoid", tg ** 2 * h_s0)
           + through((t, 0, 0, "sn"), "sigmoid", h_prev ** 2 * h_s0))
    h_g = through((t, 0, 0, "tanh"), "tanh", sp ** 2 * h_s0)
    h_ch = np.concatenate([h_c, h_g], -1)
    out["W0"] += keep[(t, "xh")].T ** 2 @ h_ch
    h_into_prev = sn ** 2 * h_s0 + (h_ch @ (w0 ** 2).T)[:, N_IN:]
    cut = horizon > 0 and t % horizon == 0
    carried = np.zeros_like(h_into_prev) if cut else h_into_prev
  return out


@pytest.fixture(scope="module")
def case():
  return _case()


def _flat(curvature):
  return {"W0": curvature["cell"]["W0"], "Ws": curvature["cell"]["Ws"], "V": curvature["V"],
          "origin": curvature["arch"]["rnn"]["origin"][0],
          "ops": curvature["arch"]["rnn"]["ops"][0]}


def test_cell_values_and_gradients_equal_the_step_by_step_reference(case):
  spec, params, x, h0, labels = case
  loss = _library_loss(spec, x, h0, labels)
  reference = lambda p: _reference_forward(p, x, h0, labels)  # noqa: E731
  np.testing.assert_allclose(loss(params), reference(params), rtol=1e-12)
  grads, expected = jax.grad(loss)(params), jax.grad(reference)(params)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
  _, engine_grads, _ = value_grad_curvature(loss, params)
  for a, b in zip(jax.tree.leaves(engine_grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("mode, horizon", [("hessian", 0), ("ggn", T), ("hessian", 1),
                                           ("ggn", 2)])
def test_curvature_through_time_equals_the_reference(case, mode, horizon):
  """τ = 0 or τ ≥ T: the full recursion; τ = 1: one-step curvature; τ = 2: the
  recursion cut at step 2."""
  spec, params, x, h0, labels = case
  _, _, curvature = value_grad_curvature(_library_loss(spec, x, h0, labels, horizon=horizon),
                                         params, mode=mode)
  expected = _reference_curvature(params, x, h0, labels, mode, horizon)
  for name, value in _flat(curvature).items():
    np.testing.assert_allclose(value, expected[name], rtol=1e-9, atol=1e-15, err_msg=name)


def test_horizon_changes_only_the_curvature_reaching_back(case):
  spec, params, x, h0, labels = case
  full = value_grad_curvature(_library_loss(spec, x, h0, labels, horizon=0), params)
  one = value_grad_curvature(_library_loss(spec, x, h0, labels, horizon=1), params)
  np.testing.assert_allclose(full[0], one[0], rtol=1e-14)   # the loss
  for a, b in zip(jax.tree.leaves(full[1]), jax.tree.leaves(one[1])):   # gradients: full BPTT
    np.testing.assert_allclose(a, b, rtol=1e-12)
  # V reads h_t directly: its curvature has no recursion through time.
  np.testing.assert_allclose(full[2]["V"], one[2]["V"], rtol=1e-12)
  assert not np.allclose(full[2]["cell"]["W0"], one[2]["cell"]["W0"], rtol=1e-3)


def test_normalisations_and_origins_keep_gradients_exact(case):
  spec, params, x, h0, labels = case
  for norm, origin in (("batch", "output"), ("layer", "input")):
    loss = _library_loss(spec, x, h0, labels, norm=norm, origin=origin)
    _, grads, curvature = value_grad_curvature(loss, params, mode="ggn")
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(jax.grad(loss)(params))):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    assert all(np.all(np.asarray(c) >= -1e-15) for c in jax.tree.leaves(curvature))  # GGN ≥ 0


def test_linear_recurrence_under_mse_is_exact_through_time():
  """h_t = h_{t−1} W + x_t with one hidden unit, loss = mean (h_t − y_t)²: every
  map is linear and each loss term is a square, so the curvature of each input
  x_k and of h_0 — carried back through every later step by W² — is the exact
  Hessian diagonal. (W itself is shared across steps, and its diagonal drops the
  cross-step terms.)"""
  rng = np.random.default_rng(1)
  y = rng.normal(size=(5, 4, 1))
  params = {"x": rng.normal(size=(5, 4, 1)), "h0": rng.normal(size=(4, 1)),
            "W": np.array([[0.7]])}

  def loss(p):
    def body(h, x_t):
      h = nn.add(nn.dense(h, p["W"]), x_t)
      return h, h
    _, hs = jax.lax.scan(body, p["h0"], p["x"])
    return nn.mean_squared_error(hs, jnp.asarray(y))

  _, _, curvature = value_grad_curvature(loss, params)
  for name in ("x", "h0"):
    flat = lambda v, n=name: loss({**params, n: v.reshape(params[n].shape)})  # noqa: E731
    exact = np.diag(jax.hessian(flat)(params[name].ravel()))
    np.testing.assert_allclose(np.ravel(curvature[name]), exact, rtol=1e-10, err_msg=name)


def test_bad_space_fields_are_one_line():
  with pytest.raises(ValueError, match="config.space.ops: 'gelu'"):
    rnn.cell_spec(2, ops=("tanh", "gelu"))
  spec, params, x, h0, _ = _case()
  with pytest.raises(ValueError, match="config.space.norm"):
    rnn.unroll(params["cell"], params["arch"]["rnn"], x, h0, spec, norm="group")


def test_mean_init_is_an_average_per_node():
  spec = rnn.cell_spec(4)
  arch = rnn.init_arch(spec, "mean")["rnn"]
  origin, ops = np.asarray(arch["origin"][0]), np.asarray(arch["ops"][0])
  for node in spec.intermediate:
    into = spec.in_edges(node)
    assert np.isclose(origin[into].sum(), 1.0) and np.allclose(ops[into].sum(axis=1), 1.0)
  with pytest.raises(ValueError, match="config.space.arch_init"):
    rnn.init_arch(spec, "zeros")
