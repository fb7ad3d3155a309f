"""Structured compression of CIFAR ResNet-18 (thesis (T) App. A-2-2, Table A-3).

The input conv, 8 basic blocks of 2 convolutions (and the 3 projections) and the
fc layer; filter- and shape-wise groups on every convolution, row-wise on fc (its
inputs; the logits stay), as the thesis. A block whose convolutions are all
pruned is removed (`removed_blocks` in summary.json). CIFAR-10 from an image
folder (`<split>/<class>/*.jpg`), `cifar-10-batches-py`, or a prepared TFDS
`cifar10` (`--config.data.data_dir`).

  python -m launch.main --config=configs/compress_resnet18_cifar10.py \\
      --config.data.path=DIR --workdir=workdirs/resnet18

Presets:
  :cpu  stage widths 16-32-64-128 (1/16 of the multiply-adds), 5,000 training and
        1,000 test images, 3 baseline epochs, 3 rounds of 1 epoch, 1 fine-tuning
        epoch: a reduced run on a 2-core CPU (QUALITY.md has its figures).
"""
import ml_collections

from bayesnas_jax.compress import resnet
from bayesnas_jax.data import CIFAR10_MEAN, CIFAR10_STD
from configs import compress_lenet300_mnist, darts_cifar10_search

PRESETS = ("cpu",)


def layer_names(blocks_per_stage=2, stages=4):
  names = ["conv0"]
  for block in resnet.block_names(stages, blocks_per_stage):
    names += [f"{block}_conv1", f"{block}_conv2"]
  return names + ["fc"]


def get_config(arg=None):
  if arg and arg not in PRESETS:
    raise ValueError(f"config preset: expected one of {PRESETS}, got {arg!r}")
  config = compress_lenet300_mnist.get_config()
  config.data = darts_cifar10_search.cifar10_data()
  config.input.batch_size = 128
  config.input.mean = CIFAR10_MEAN
  config.input.std = CIFAR10_STD
  config.model = ml_collections.ConfigDict()
  config.model.name = "resnet18"
  config.model.num_classes = 10
  config.model.stage_widths = resnet.STAGE_WIDTHS
  config.model.blocks_per_stage = 2
  config.train.learning_rate = 0.1
  config.train.baseline_epochs = 30
  names = layer_names()
  config.compress.groups = ml_collections.ConfigDict(
      {name: ("row" if name == "fc" else "filter,shape") for name in names})
  config.compress.layer_lambda = ml_collections.ConfigDict({name: 0.0 for name in names})
  # Weights before batch norm have 10–100× less curvature than LeNet's, and the
  # evidence rule keeps a group when Σ H²w² > λ Σ H: λ is set accordingly
  # (the per-layer figures are in QUALITY.md).
  config.compress.lambda_ = 1e-7
  # The reduced run of QUALITY.md was measured with these two; LeNet's defaults differ.
  config.compress.lambda_ramp = "constant"
  config.train.schedule = "constant"
  config.compress.distill = 0.0
  config.compress.rounds = 5
  config.compress.epochs_per_round = 2
  config.compress.finetune_epochs = 5
  if arg == "cpu":
    config.model.stage_widths = (16, 32, 64, 128)
    config.input.train_examples = 5000
    config.input.test_examples = 1000
    config.train.baseline_epochs = 3
    config.compress.rounds = 3
    config.compress.epochs_per_round = 1
    config.compress.finetune_epochs = 1
  return config
