"""Transfer of a derived cell to ImageNet in the mobile setting (paper §6; DARTS).

14 cells, C = 48, the two-stem ImageNet network (three stride-2 3×3 convs before
the first cell), 224² inputs, auxiliary head (weight 0.4), 250 epochs of SGD
(momentum 0.9, learning rate 0.1 × 0.97 per epoch, weight decay 3e-5, gradient norm
clipped at 5), batch 128, label smoothing 0.1, no drop-path (DARTS' ImageNet default).

The input is streamed (`input.pipeline = "grain"`, bayesnas_jax.data.streaming):
records are read, decoded, random-resized-cropped to 224² and flipped in
`input.workers` processes, each host reading only its shard, and the test split is
resized (shorter side 256) and centre-cropped — nothing is held in memory, and the
loader's position is saved in every checkpoint, so a relaunch resumes on the batch
it stopped at. The data must be prepared by the user: TFDS `imagenet2012` built as
array_record (`tfds build imagenet2012 --file_format=array_record` on a machine with
TensorFlow and the manually downloaded archives; --config.data.data_dir=DIR), or an
image folder DIR/<split>/<class>/*.jpg (--config.data.source=image_folder
--config.data.path=DIR). `launch.bench_loader` measures the loader's images/s on
your machine (BENCHMARKS.md has this project's figures).

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
  config.input.pipeline = "grain"
  config.input.workers = 8
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
