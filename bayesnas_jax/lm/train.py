"""Training a derived recurrent cell from scratch (the evaluation of RNN thesis
(R) §5): the cell of a search's `genotype.json` in the network of `lm.model`."""
from __future__ import annotations

import json
import math
import os
import time

import jax
import numpy as np

from bayesnas_jax import files
from bayesnas_jax.data import text
from bayesnas_jax.lm.model import Steps, _epoch, _log, init_params, perplexity
from bayesnas_jax.lm.search import genotype_literal, genotype_masks, validate
from bayesnas_jax.search import hard
from bayesnas_jax.spaces import rnn


def load_genotype(path: str):
  """genotype.json of a search: {"recurrent": [[op, from], ...], "concat": [...]}."""
  try:
    with open(path, encoding="utf-8") as f:
      genotype = json.load(f)
  except (OSError, ValueError) as err:
    raise ValueError(f"config.train.genotype: cannot read {path!r} as genotype.json "
                     f"({err.__class__.__name__})") from None
  recurrent = genotype.get("recurrent") if isinstance(genotype, dict) else None
  if not recurrent or not all(isinstance(e, list) and len(e) == 2 for e in recurrent):
    raise ValueError(f"config.train.genotype: {path} has no 'recurrent' list of "
                     f"[op, from_node] pairs")
  return genotype


def train_cell(config, workdir: str, log=_log):
  """Trains the cell of `config.train.genotype` from scratch (the evaluation of
  (R) §5): SGD, then averaged SGD once the validation loss stops improving
  (AWD-LSTM's non-monotone trigger: worse than the best of all but the last
  `train.nonmono` epochs); validation and test perplexity at the end, with the
  averaged weights once averaging has started."""
  validate(config)
  start = time.perf_counter()
  genotype = load_genotype(config.train.genotype)
  spec = rnn.cell_spec(len(genotype["recurrent"]), tuple(config.space.ops))
  masks = genotype_masks(spec, genotype)
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
  steps = Steps(spec, config, train_arch=False, norm=config.train.norm)
  opt_w = steps.weight_opt.init(params)
  omega = hard.init_prior(ones, "cell_type")["omega"]
  log(f"training {genotype_literal(genotype)} at size {size}, "
      f"{sum(np.size(v) for v in jax.tree_util.tree_leaves(params))} parameters")
  history, average, asgd_from = [], None, None
  for epoch in range(config.train.epochs):
    out = _epoch(steps, params, ones, opt_w, None, masks, omega, train, config, key, epoch,
                 config.train.get("steps_per_epoch", 0), f"epoch {epoch + 1}", log,
                 average=average)
    params, _, opt_w, _, key, _ = out[:6]
    if average is not None:
      average = out[6]
    current = average[0] if average is not None else params
    ppl = perplexity(steps, current, ones, masks, valid, config.input.bptt, size)
    history.append(math.log(ppl))
    log(f"epoch {epoch + 1}: valid perplexity {ppl:.2f}" + (" (averaged)" if average else ""))
    nonmono = config.train.nonmono
    if (average is None and config.train.asgd and len(history) > nonmono
        and history[-1] > min(history[:-nonmono])):
      average, asgd_from = (params, 1), epoch + 2
      log(f"validation stopped improving: averaging weights from epoch {asgd_from}")
  final = average[0] if average is not None else params
  valid_ppl = perplexity(steps, final, ones, masks, valid, config.input.bptt, size)
  test_ppl = perplexity(steps, final, ones, masks, test, config.input.bptt, size)
  summary = {"genotype": genotype, "genotype_literal": genotype_literal(genotype),
             "valid_perplexity": round(valid_ppl, 2), "test_perplexity": round(test_ppl, 2),
             "valid_perplexity_by_epoch": [round(math.exp(v), 2) for v in history],
             "asgd_from_epoch": asgd_from,
             "parameters": int(sum(np.size(v) for v in jax.tree_util.tree_leaves(params))),
             "seconds": round(time.perf_counter() - start, 1),
             "device": jax.devices()[0].device_kind}
  files.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary
