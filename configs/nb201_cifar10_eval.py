"""Training a NAS-Bench-201 cell from scratch on CIFAR-10 (NB201's protocol).

C = 16, N = 5 cells per stage; SGD with Nesterov momentum 0.9, learning rate
0.1 on a cosine to 0 (constant within an epoch), weight decay 5e-4, batch 256,
random crop with 4-pixel padding and horizontal flip, 200 epochs
(`--config.train.epochs=12` for NB201's short protocol). The cell is an NB201
string in a file (e.g. a search's `nb201_arch.txt`) or a search's
genotype.json, given as the preset or as `--config.genotype`:

  python -m launch.main --config=configs/nb201_cifar10_eval.py:workdirs/nb201/nb201_arch.txt \
      --config.data.path=DIR --workdir=workdirs/nb201_eval

mode "summary" prints parameters and multiply-adds per image only.
"""
import ml_collections

from configs import darts_cifar10_eval


def get_config(arg=None):
  config = darts_cifar10_eval.get_config(arg)
  config.input.batch_size = 256
  config.input.cutout_length = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = "nb201"
  config.model.channels = 16
  config.model.cells_per_stage = 5
  config.model.num_classes = 10
  config.model.image_size = 32
  config.model.in_channels = 3
  config.model.bn_momentum = 0.1

  config.train.epochs = 200
  config.train.learning_rate = 0.1
  config.train.lr_schedule = "cosine"
  config.train.momentum = 0.9
  config.train.nesterov = True
  config.train.weight_decay = 5e-4
  config.train.grad_clip = 0.0
  config.train.auxiliary_weight = 0.0
  config.train.drop_path_prob = 0.0
  return config
