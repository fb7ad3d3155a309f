"""Training a derived cell from scratch on CIFAR-10 (paper §6.1; DARTS evaluation).

20 cells, C = 36, auxiliary head (weight 0.4), drop-path 0.2, cutout 16, 600 epochs
of SGD (momentum 0.9, cosine learning rate from 0.025, weight decay 3e-4, gradient
norm clipped at 5), batch 96. The genotype is a search's genotype.json or a file
holding a DARTS Genotype(...) literal; give it as the preset or as a field:

  python -m launch.main --config=configs/darts_cifar10_eval.py:workdirs/search/genotype.json \
      --workdir=workdirs/eval
  python -m launch.main --config=configs/darts_cifar10_eval.py \
      --config.genotype=genotype.json --config.mode=summary --workdir=workdirs/eval

mode "train" trains and tests (resumable; summary.json), mode "summary" prints the
parameters (without the auxiliary head) and multiply-adds per image only.
"""
import ml_collections

from bayesnas_jax.data.augment import CIFAR10_MEAN, CIFAR10_STD
from configs import darts_cifar10_search


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.mode = "train"  # train | summary
  config.genotype = arg or ""  # genotype.json, or a file with a DARTS Genotype literal.
  config.tensorboard = True
  config.log_every_steps = 50
  config.checkpoint_every_steps = 0  # 0: checkpoints at the end of every epoch only.
  config.stop_after_steps = 0  # > 0 ends the launch early (resume testing).
  config.compilation_cache_dir = ""  # e.g. ~/.cache/bayesnas_jax: reuse XLA builds.
  # "" keeps JAX's default for float32 matmuls and convolutions (TF32 on recent
  # NVIDIA GPUs); "highest" or "float32" asks for full float32.
  config.matmul_precision = ""

  config.data = darts_cifar10_search.cifar10_data()

  config.input = ml_collections.ConfigDict()
  config.input.batch_size = 96
  config.input.crop_padding = 4
  config.input.flip = True
  config.input.cutout_length = 16
  config.input.mean = CIFAR10_MEAN
  config.input.std = CIFAR10_STD
  config.input.resize = 0  # > 0: stored images resized to this size first (short protocols)
  config.input.train_examples = 0  # > 0: a fixed random subset (short protocols)
  config.input.test_examples = 0
  # memory: splits decoded into RAM, augmented on device; grain: streamed, decoded and
  # augmented (random-resized crop, flip) in `workers` processes (data.streaming).
  config.input.pipeline = "memory"
  config.input.workers = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = "darts"  # the evaluation network: darts | nb201
  config.model.stem = "cifar"  # cifar | imagenet
  config.model.channels = 36  # C of the first cells.
  config.model.layers = 20  # cells; reductions at 1/3 and 2/3.
  config.model.stem_multiplier = 3
  config.model.num_classes = 10
  config.model.image_size = 32  # Network input; larger stored images are cropped.
  config.model.in_channels = 3
  config.model.auxiliary = True  # Auxiliary head at 2/3 depth (training only).
  config.model.bn_momentum = 0.1
  config.model.depthwise_impl = "auto"  # auto | shifted | lax | masked_dense

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 600
  config.train.learning_rate = 0.025
  config.train.lr_schedule = "cosine"  # cosine | exponential (lr · lr_decay^epoch)
  config.train.lr_decay = 0.97
  config.train.momentum = 0.9
  config.train.nesterov = False
  config.train.weight_decay = 3e-4
  config.train.grad_clip = 5.0  # Global gradient norm; 0 turns clipping off.
  config.train.auxiliary_weight = 0.4
  config.train.drop_path_prob = 0.2  # Reached linearly over the epochs.
  config.train.label_smoothing = 0.0
  config.train.eval_every_epochs = 1  # Test accuracy every K epochs (and the last).
  return config
