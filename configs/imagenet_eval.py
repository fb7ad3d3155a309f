"""Transfer of a derived cell to ImageNet in the mobile setting (paper §6; DARTS).

14 cells, C = 48, the two-stem ImageNet network (three stride-2 3×3 convs before
the first cell), 224² inputs, auxiliary head (weight 0.4), 250 epochs of SGD
(momentum 0.9, learning rate 0.1 × 0.97 per epoch, weight decay 3e-5, gradient norm
clipped at 5), batch 128, label smoothing 0.1, no drop-path (DARTS' ImageNet default).

The data must be prepared by the user, and at one fixed size. The input pipeline is
deliberately simple: whole splits are held in memory as uint8 arrays of ONE size
(e.g. 256×256 or 224×224); training takes a random 224² crop and a flip on device,
testing the central crop; no resizing, scale augmentation or colour jitter. TFDS
`imagenet2012` needs the manually downloaded archives and keeps the original,
varying image sizes, which this pipeline rejects (one error naming the record). So
resize first, then either build a TFDS dataset of the resized images
(--config.data.data_dir=DIR, `data.name` its name) or write an image folder
DIR/<split>/<class>/*.jpg (--config.data.source=image_folder --config.data.path=DIR).
Mind the memory: about 250 GB for the 1.28M training images at 256², 190 GB at 224²
(data.cache_dir keeps the decoded arrays between launches).

  python -m launch.main --config=configs/imagenet_eval.py:genotype.json \
      --config.data.data_dir=DIR --workdir=workdirs/imagenet
"""
from configs import darts_cifar10_eval

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(arg=None):
  config = darts_cifar10_eval.get_config(arg)
  config.data.source = "tfds"
  config.data.name = "imagenet2012"
  config.data.splits = ("train", "validation")
  config.input.batch_size = 128
  config.input.crop_padding = 0
  config.input.cutout_length = 0
  config.input.mean = IMAGENET_MEAN
  config.input.std = IMAGENET_STD
  config.model.stem = "imagenet"
  config.model.channels = 48
  config.model.layers = 14
  config.model.num_classes = 1000
  config.model.image_size = 224
  config.train.epochs = 250
  config.train.learning_rate = 0.1
  config.train.lr_schedule = "exponential"
  config.train.lr_decay = 0.97
  config.train.weight_decay = 3e-5
  config.train.drop_path_prob = 0.0
  config.train.label_smoothing = 0.1
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  return config
