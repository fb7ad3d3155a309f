"""Checks of a run config: one-line errors that name the field and what was expected."""
from __future__ import annotations

from bayesnas_jax import spaces
from bayesnas_jax.derivation import DERIVATIONS
from bayesnas_jax.search.hard import (GROUPINGS, LAMBDA_RAMPS, PRUNE_RULES, RANK_BY,
                                     ZERO_CURVATURE)
from bayesnas_jax.search.objective import CURVATURE_SOURCES
from bayesnas_jax.nn.probe import MODES
from bayesnas_jax.prior import DEPENDENCIES


def _need(condition, field, expected, value):
  if not condition:
    raise ValueError(f"config.{field}: expected {expected}, got {value!r}")


def _positive_int(config, field, allow_zero=False):
  value = config
  for part in field.split("."):
    value = value[part]
  ok = isinstance(value, int) and not isinstance(value, bool) and (
      value >= 0 if allow_zero else value > 0)
  _need(ok, field, "a non-negative integer" if allow_zero else "a positive integer", value)


def _number(config, field, low=None, high=None, low_open=False):
  value = config
  for part in field.split("."):
    value = value[part]
  ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value <= high
  bounds = f"a number{'' if low is None else (' > ' if low_open else ' >= ') + str(low)}"
  bounds += "" if high is None else f" and <= {high}"
  _need(ok, field, bounds, value)


def validate(config):
  """Raises ValueError for the first bad field of a search config."""
  spaces.validate(config.space)
  if config.space.name == "rnn":
    raise ValueError("config.space.name: the recurrent space is searched on text by "
                     "config.mode = 'rnn_search' (configs/darts_ptb_search.py), not by an "
                     "image search")
  for field in ("input.batch_size", "search.rounds",
                "search.epochs_per_round", "log_every_steps", "checkpoint_every_steps",
                "search.top_k"):
    _positive_int(config, field)
  for field in ("search.warmup_epochs", "search.curvature_batches", "retrain.epochs",
                "input.crop_padding", "input.cutout_length", "input.image_size", "stop_after_steps",
                "input.train_examples", "input.test_examples"):
    _positive_int(config, field, allow_zero=True)
  _number(config, "search.lambda_w", 0, low_open=True)
  _number(config, "search.learning_rate", 0, low_open=True)
  _number(config, "search.weight_decay", 0)
  _number(config, "search.momentum", 0, 1)
  _number(config, "search.grad_clip", 0)
  _number(config, "search.warmup_fraction", 0, 0.9)
  _number(config, "search.prune_threshold", 0)
  _need(config.search.curvature_mode in MODES, "search.curvature_mode", f"one of {MODES}",
        config.search.curvature_mode)
  _need(config.search.compute_dtype in ("float32", "bfloat16"), "search.compute_dtype",
        "'float32' or 'bfloat16'", config.search.compute_dtype)
  _need(config.search.curvature_pass in ("after", "during"), "search.curvature_pass",
        "'after' or 'during'", config.search.curvature_pass)
  _need(config.search.dependency in DEPENDENCIES, "search.dependency",
        f"one of {DEPENDENCIES}", config.search.dependency)
  _need(config.search.grouping in GROUPINGS, "search.grouping", f"one of {GROUPINGS}",
        config.search.grouping)
  _need(config.search.optimizer in ("sgd", "adam"), "search.optimizer", "'sgd' or 'adam'",
        config.search.optimizer)
  search = config.search
  for field, choices in (("curvature_source", CURVATURE_SOURCES), ("rank_by", RANK_BY),
                         ("derivation", DERIVATIONS), ("zero_curvature", ZERO_CURVATURE),
                         ("prune_rule", PRUNE_RULES), ("lambda_ramp", LAMBDA_RAMPS)):
    if field in search:
      _need(search[field] in choices, f"search.{field}", f"one of {choices}", search[field])
  for field in ("zero_tolerance", "lambda_w_origin", "penalty_budget", "confidence_z"):
    if field in search:
      _number(config, f"search.{field}", 0)
  if "retrain_between_rounds" in search:
    _positive_int(config, "search.retrain_between_rounds", allow_zero=True)
  if "curvature_samples" in search:
    _positive_int(config, "search.curvature_samples")
  if search.get("curvature_source", "recursion") in ("exact", "ggn"):
    _need(search.curvature_pass == "after", "search.curvature_pass",
          "'after' with curvature_source exact or ggn (one pass per scalar, on the "
          "curvature_batches after the round)", search.curvature_pass)
  _need(len(config.data.splits) in (1, 2), "data.splits", "(train,) or (train, test)",
        config.data.splits)
  _need(config.retrain.epochs == 0 or len(config.data.splits) == 2, "retrain.epochs",
        "0 when data.splits names no test split", config.retrain.epochs)
