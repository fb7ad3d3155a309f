"""Structured compression of LeNet-5 (Caffe's 20-50-800-500; thesis (T) App. A).

Filter- and shape-wise groups on the convolutions, row- and column-wise on the
dense layers (the thesis' choice); otherwise as configs/compress_lenet300_mnist.py:

  python -m launch.main --config=configs/compress_lenet5_mnist.py --workdir=workdirs/lenet5
"""
import ml_collections

from configs import compress_lenet300_mnist


def get_config(arg=None):
  config = compress_lenet300_mnist.get_config(arg)
  config.model.name = "lenet5"
  config.train.learning_rate = 0.01  # Caffe's LeNet-5 rate; 0.05 diverges without BN
  config.compress.groups = ml_collections.ConfigDict(
      {"Conv_0": "filter,shape", "Conv_1": "filter,shape", "Dense_0": "row,column",
       "Dense_1": "row"})
  # Per-layer λ^l (the ramp and schedule of the LeNet-300 config): a conv filter's
  # weights carry far more evidence than a dense unit's, so the convolutions, which
  # hold 82% of the multiply-adds, need 15–150× the dense λ to lose filters at all
  # (QUALITY.md, Fashion-MNIST with the distillation of the LeNet-300 config: 11.9–13.3×
  # fewer multiply-adds at +0.25…+0.65 points over three seeds).
  config.compress.lambda_ = 2e-6
  config.compress.layer_lambda = ml_collections.ConfigDict(
      {"Conv_0": 3e-4, "Conv_1": 3e-5, "Dense_0": 0.0, "Dense_1": 0.0})
  return config
