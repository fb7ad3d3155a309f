"""Training a derived recurrent cell from scratch (the evaluation of RNN thesis
(R) §5): the cell of a search's `genotype.json` in the network of `lm.model`."""
from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayesnas_jax import files
from bayesnas_jax.data import text
from bayesnas_jax.lm.model import (_HINT, LMState, _epoch, _log, init_params, perplexity,
                                   steps_for)
from bayesnas_jax.loop import Run
from bayesnas_jax.lm.search import validate
from bayesnas_jax.search import hard
from bayesnas_jax.spaces import rnn


def train_cell(config, workdir: str, log=_log):
  """Trains the cell of `config.train.genotype` from scratch (the evaluation of
  (R) §5): SGD, then averaged SGD once the validation loss stops improving
  (AWD-LSTM's non-monotone trigger: worse than the best of all but the last
  `train.nonmono` epochs); validation and test perplexity at the end, with the
  averaged weights once averaging has started."""
  validate(config)
  start = time.perf_counter()
  genotype = rnn.load_genotype(config.train.genotype)
  spec = rnn.cell_spec(len(genotype["recurrent"]), tuple(config.space.ops))
  masks = rnn.genotype_masks(spec, genotype)
  corpus = text.load_text(config.data.path or config.data.name, config.data.get("data_dir", ""))
  size = config.space.size
  train = text.batchify(corpus.train, config.input.batch_size)
  valid = text.batchify(corpus.valid, config.input.eval_batch_size)
  test = text.batchify(corpus.test, config.input.get("test_batch_size", 1))
  if config.input.get("valid_tokens", 0):
    valid = valid[:, :max(config.input.valid_tokens // valid.shape[0], 2)]
    test = test[:, :max(config.input.valid_tokens // test.shape[0], 2)]
  os.makedirs(workdir, exist_ok=True)
  key = jax.random.PRNGKey(config.seed)
  key, k_init = jax.random.split(key)
  params = init_params(k_init, len(corpus.vocab), size, spec)
  ones = rnn.init_arch(spec)
  steps = steps_for(spec, config, train_arch=False, norm=config.train.norm)
  omega = hard.init_prior(ones, "cell_type").omega
  log(f"training {rnn.genotype_literal(genotype)} at size {size}, "
      f"{sum(np.size(v) for v in jax.tree_util.tree_leaves(params))} parameters")
  # "average"/"average_count": ASGD's averaged weights, once averaging has begun.
  run = Run(workdir, LMState(params=params, arch=ones, opt_w=steps.weight_opt.init(params),
                             opt_a=steps.arch_opt.init(ones), key=key,
                             h=jnp.zeros((config.input.batch_size, size)), average=params,
                             average_count=jnp.zeros((), jnp.int32)),
            checkpoint_every_steps=config.get("checkpoint_every_steps", 0),
            stop_after_steps=config.get("stop_after_steps", 0), hint=_HINT, log=log)
  try:
    history, asgd_from = [], None
    for epoch in range(config.train.epochs):
      phase = f"epoch {epoch + 1}"
      averaging = asgd_from is not None
      if not run.finished(phase):
        _epoch(steps, run, masks, omega, train, config, epoch,
               config.train.get("steps_per_epoch", 0), phase, log, average=averaging)
        current = run.state.average if averaging else run.state.params
        ppl = perplexity(steps, current, ones, masks, valid, config.input.bptt, size)
        log(f"epoch {epoch + 1}: valid perplexity {ppl:.2f}" + (" (averaged)" if averaging
                                                                else ""))
        history_now = history + [math.log(ppl)]
        nonmono = config.train.nonmono
        start_averaging = (not averaging and config.train.asgd and len(history_now) > nonmono
                           and history_now[-1] > min(history_now[:-nonmono]))
        if start_averaging:
          run.state = run.state.replace(average=run.state.params,
                                        average_count=jnp.ones((), jnp.int32))
          log(f"validation stopped improving: averaging weights from epoch {epoch + 2}")
        run.finish(phase, log_perplexity=math.log(ppl),
                   asgd_from=epoch + 2 if start_averaging else asgd_from)
      history.append(run.record(phase)["log_perplexity"])
      asgd_from = run.record(phase)["asgd_from"]
    final = run.state.average if asgd_from is not None else run.state.params
    valid_ppl = perplexity(steps, final, ones, masks, valid, config.input.bptt, size)
    test_ppl = perplexity(steps, final, ones, masks, test, config.input.bptt, size)
  finally:
    run.close()
  summary = {"genotype": genotype, "genotype_literal": rnn.genotype_literal(genotype),
             "valid_perplexity": round(valid_ppl, 2), "test_perplexity": round(test_ppl, 2),
             "valid_perplexity_by_epoch": [round(math.exp(v), 2) for v in history],
             "asgd_from_epoch": asgd_from,
             "parameters": int(sum(np.size(v) for v in jax.tree_util.tree_leaves(params))),
             "seconds": round(time.perf_counter() - start, 1),
             "device": jax.devices()[0].device_kind}
  files.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary
