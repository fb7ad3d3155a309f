"""Training a searched recurrent cell from scratch on Penn Treebank ((R) §5).

The thesis' evaluation: embedding and hidden size 850, batch 64, SGD at lr 10 with
weight decay 8e-7, then averaged SGD once the validation loss stops improving
(AWD-LSTM's non-monotone trigger, 5 epochs), variational dropout 0.1 on the
embeddings, 0.75 on the cell input, 0.25 on the hidden nodes and 0.75 on the
output, no normalisation in the cell; 3,300 epochs in the thesis (`train.epochs`).

  python -m launch.main --config=configs/darts_ptb_eval.py \\
      --config.train.genotype=workdirs/ptb_search/genotype.json \\
      --config.data.path=PTB_DIR --workdir=workdirs/ptb_eval

summary.json: valid and test perplexity (averaged weights once ASGD started), the
validation perplexity per epoch and the epoch averaging began. Presets:
  :cpu  size 64, 2 epochs of 300 steps, 5,000 validation and test tokens.
"""
from configs import darts_ptb_search

PRESETS = ("cpu",)


def get_config(arg=None):
  if arg and arg not in PRESETS:
    raise ValueError(f"config preset: expected one of {PRESETS}, got {arg!r}")
  config = darts_ptb_search.get_config()
  config.mode = "rnn_train"
  config.space.size = 850
  config.input.test_batch_size = 1
  config.train.genotype = ""  # genotype.json of a search
  config.train.learning_rate = 10.0
  config.train.weight_decay = 8e-7
  config.train.dropout_input = 0.1
  config.train.dropout_x = 0.75
  config.train.dropout_hidden = 0.25
  config.train.dropout_output = 0.75
  config.train.norm = "none"
  config.train.epochs = 3300
  config.train.steps_per_epoch = 0  # > 0: stop each epoch early (reduced runs)
  config.train.asgd = True
  config.train.nonmono = 5
  if arg == "cpu":
    config.log_every_steps = 50
    config.space.size = 64
    config.input.bptt = 20
    config.input.test_batch_size = 10
    config.input.valid_tokens = 5000
    config.train.epochs = 2
    config.train.steps_per_epoch = 300
  return config
