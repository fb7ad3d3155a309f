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
  config.compress.layer_lambda = ml_collections.ConfigDict(
      {"Conv_0": 0.0, "Conv_1": 0.0, "Dense_0": 0.0, "Dense_1": 0.0})
  return config
