"""Training a searched tree-cell PyramidNet from scratch on CIFAR-10 (paper §6.2).

The network keeps the paths of a search's genotype.json (`spaces.tree_pyramid`,
rebuilt: edges no kept path uses are gone, empty cells leave the shortcut), with
affine batch norm. The paper's retraining: batch 64, lr 0.1 on a cosine, cutout;
epochs and weight decay are not stated, so these follow Cai et al.'s PyramidNet
code (Nesterov momentum 0.9, weight decay 1e-4, 300 epochs; 600 for their best).

  python -m launch.main --config=configs/tree_pyramidnet_cifar10_eval.py:workdirs/tree_search/genotype.json \\
      --config.data.path=DIR --workdir=workdirs/tree_eval

`--config.mode=summary` prints parameters and multiply-adds per image only.
"""
import ml_collections

from configs import darts_cifar10_eval


def get_config(arg=None):
  config = darts_cifar10_eval.get_config(arg)
  config.input.batch_size = 64
  config.input.cutout_length = 16
  config.model = ml_collections.ConfigDict()
  config.model.name = "tree_pyramid"
  config.model.cells_per_stage = 18  # bottleneck blocks per stage (N)
  config.model.alpha = 84.0  # additive widening
  config.model.channels = 16  # the stem's width (fixed by PyramidNet)
  config.model.num_classes = 10
  config.model.image_size = 32
  config.model.in_channels = 3
  config.model.bn_momentum = 0.1
  config.train.epochs = 300
  config.train.learning_rate = 0.1
  config.train.lr_schedule = "cosine"
  config.train.momentum = 0.9
  config.train.nesterov = True
  config.train.weight_decay = 1e-4
  config.train.grad_clip = 0.0
  config.train.auxiliary_weight = 0.0
  config.train.drop_path_prob = 0.0
  return config
