"""A five-minute BayesNAS run on this machine's CPU: search → derive → retrain → test.

Uses the CIFAR-10 subset shipped in the package (500 train and 100 test images
per class) at 16×16 and a 3-cell, 8-channel DARTS supernet with the five 3×3 ops of the
DARTS space (the 5×5 convolutions are left out to keep compilation short on a
2-core CPU; `--config.space.ops` puts them back).
"""
from bayesnas_jax.data.quickstart import quickstart_path
from configs import darts_cifar10_search


def get_config(arg=None):
  config = darts_cifar10_search.get_config(arg)
  config.data.source = "image_folder"
  config.data.path = quickstart_path()
  config.input.batch_size = 50
  config.input.image_size = 16  # Half-resolution images: a quarter of the compute.
  config.space.ops = ("skip_connect", "sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3",
                      "avg_pool_3x3")
  config.space.channels = 8
  config.space.layers = 3
  config.space.stem_multiplier = 2
  config.space.remat = False  # Small enough to keep activations; compiles faster.
  config.search.rounds = 1
  # The sampled curvature on the last half of the round's 90 batches: its phase,
  # compilation included, stays under the training phase's.
  config.search.curvature_batches = 45
  config.search.learning_rate = 0.05
  config.search.weight_decay = 3e-4
  config.retrain.epochs = 1
  # Quality benchmark protocol: the derived cell in a 3-cell, C = 8 network at
  # 16×16, 8 epochs on the same 5,000 images, tested on its 1,000.
  config.quality.epochs = 8
  config.quality.batch_size = 50
  config.quality.resize = 16
  config.quality.image_size = 16
  config.quality.channels = 8
  config.quality.model.layers = 3
  config.quality.model.stem_multiplier = 2
  config.log_every_steps = 10
  config.checkpoint_every_steps = 50
  return config
