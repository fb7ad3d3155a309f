"""The language model's training step (`bayesnas_jax.lm.model`): the decoupled L1
penalty on the architecture scalars."""
import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax.spaces import rnn


def test_decoupled_penalty_is_a_proximal_step_after_adam():
  """`search.penalty_update = "decoupled"`: Adam moves the scalars on the data
  gradient alone (the same step as with λ_w = 0), then the L1 term shrinks each
  towards 0 by lr·λ_w·ω, stopping at 0; "adam" (as written) differs."""
  from configs import darts_ptb_search  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.lm import model as lm_model  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.search import hard  # pylint: disable=import-outside-toplevel

  def one_step(update, lambda_w):
    config = darts_ptb_search.get_config("cpu")
    config.space.size, config.space.num_nodes = 8, 2
    config.search.penalty_update, config.search.lambda_w = update, lambda_w
    spec = rnn.cell_spec(2, tuple(config.space.ops))
    params = lm_model.init_params(jax.random.PRNGKey(0), 20, 8, spec)
    arch = jax.tree_util.tree_map(
        lambda a: a * jnp.linspace(0.002, 1.0, a.size).reshape(a.shape), rnn.init_arch(spec))
    prior = hard.init_prior(arch, "cell_type")
    omega = jax.tree_util.tree_map(lambda o: o * 1.5, prior.omega)
    masks = hard.network_masks(prior.keep, arch)
    steps = lm_model.Steps(spec, config, train_arch=True)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (4, 6), 0, 20)
    out = steps.train_step(params, arch, steps.weight_opt.init(params),
                           steps.arch_opt.init(arch), masks, omega, tokens[:, :5],
                           tokens[:, 1:], jnp.zeros((4, 8)), jax.random.PRNGKey(2),
                           jnp.float32(1.0))
    return out[1], omega, float(config.search.arch_learning_rate)

  plain, _, _ = one_step("adam", 0.0)
  decoupled, omega, lr = one_step("decoupled", 2.0)
  written, _, _ = one_step("adam", 2.0)
  expected = jax.tree_util.tree_map(
      lambda w, o: np.sign(w) * np.maximum(np.abs(w) - lr * 2.0 * o, 0.0), plain, omega)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                         decoupled, expected)
  flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(t)])
  assert np.sum(flat(decoupled) == 0) > 0  # the smallest scalars stop at exactly 0
  assert np.max(np.abs(flat(written) - flat(decoupled))) > 1e-4


def test_pair_fisher_estimates_the_exact_gauss_newton_matrix():
  """`pair_fisher` (labels drawn from the model, one backward pass per sequence
  and draw) against the Gauss–Newton matrix of the mean cross-entropy w.r.t. the
  (edge, op) scalars computed from the full Jacobian, in float64 on a tiny
  model: with 4,000 draws the Monte-Carlo error is about 1%; the test allows 5%,
  while the matrix's off-diagonal part alone is over a third of its norm (a
  diagonal-only estimate would fail)."""
  import types  # pylint: disable=import-outside-toplevel
  from bayesnas_jax.lm import model as lm_model  # pylint: disable=import-outside-toplevel

  # float64: x64 is on for the whole suite (tests/conftest.py).
  spec = rnn.cell_spec(2)
  vocab, size, batch, steps = 7, 5, 3, 4
  params = jax.tree_util.tree_map(
      lambda a: a.astype(jnp.float64),
      lm_model.init_params(jax.random.PRNGKey(0), vocab, size, spec, init_range=0.5))
  arch = jax.tree_util.tree_map(
      lambda a: a.astype(jnp.float64)
      * (1 + 0.3 * jax.random.normal(jax.random.PRNGKey(3), a.shape, jnp.float64)),
      rnn.init_arch(spec, "mean"))
  inputs = jax.random.randint(jax.random.PRNGKey(1), (batch, steps), 0, vocab)
  h0 = jnp.zeros((batch, size), jnp.float64)
  space = types.SimpleNamespace(norm="none", origin="output")
  ops = arch[rnn.KIND]["ops"]

  def logits_of(flat):
    a = {**arch[rnn.KIND], "ops": flat.reshape(ops.shape)}
    out, _ = rnn.unroll(params["cell"], a, params["embedding"][inputs.T], h0, spec,
                        norm="none", origin="output")
    return out @ params["embedding"].T + params["bias"]

  flat = ops.reshape(-1)
  jac = jax.jacfwd(logits_of)(flat)                        # [T, B, V, P]
  p = jax.nn.softmax(logits_of(flat), -1)
  lam = jnp.einsum("tbv,vw->tbvw", p, jnp.eye(vocab)) - jnp.einsum("tbv,tbw->tbvw", p, p)
  exact = np.asarray(jnp.einsum("tbvi,tbvw,tbwj->ij", jac, lam, jac) / (steps * batch))
  estimate, _ = jax.jit(lambda k: lm_model.pair_fisher(params, arch, inputs, h0, spec, space,
                                                       k, 4000))(jax.random.PRNGKey(10))
  estimate = np.asarray(estimate)
  off = exact - np.diag(np.diag(exact))
  assert np.linalg.norm(off) > 0.33 * np.linalg.norm(exact)
  assert np.linalg.norm(estimate - exact) < 0.05 * np.linalg.norm(exact)
