"""Small helpers shared by the end-to-end tests."""
import os
import re

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_image_folder(root, train_per_class=16, test_per_class=3, size=8,
                      classes=("ant", "bee", "cat"), separable=True):
  """An image folder of small PNGs; returns its path. Class-separable by
  brightness, or with `separable=False` uniform noise whose label the pixels do
  not tell (the loss cannot reach 0, so the curvature stays well above 0)."""
  rng = np.random.default_rng(0)
  for split, count in (("train", train_per_class), ("test", test_per_class)):
    for label, name in enumerate(classes):
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      for i in range(count):
        pixels = (rng.integers(0, 60, (size, size, 3)) + 60 * label if separable
                  else rng.integers(0, 256, (size, size, 3)))
        Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(folder, f"{i}.png"))
  return str(root)


def parse_sweep_args(args, settings, seeds):
  """`[SEEDS] [field=value ...]` of a planted-teacher sweep script: the number
  of seeds (default `seeds`) and `settings` (a NamedTuple) with the fields
  replaced, each parsed as its default's type."""
  fields = {}
  for arg in args:
    if "=" not in arg:
      seeds = int(arg)
      continue
    name, value = arg.split("=", 1)
    kind = type(getattr(settings, name))
    fields[name] = value if kind is str else kind(value)
  return seeds, settings._replace(**fields)


def write_corpus(path, train_lines=120, other_lines=20, vocabulary=30, seed=0):
  """train.txt, valid.txt and test.txt of 8-word lines in which a word is mostly
  followed by the next one of `vocabulary` words (a text a tiny LM can learn)."""
  rng = np.random.default_rng(seed)
  words = [f"w{i}" for i in range(vocabulary)]
  for name, lines in (("train.txt", train_lines), ("valid.txt", other_lines),
                      ("test.txt", other_lines)):
    with open(os.path.join(path, name), "w", encoding="utf-8") as f:
      for _ in range(lines):
        start = int(rng.integers(vocabulary))
        f.write(" ".join(words[(start + i) % vocabulary] for i in range(8)) + "\n")


def write_tiny_idx(root):
  """Fashion-MNIST-shaped IDX files: 64 training and 32 test 28×28 images whose
  brightness grows with the label (a task a small network learns)."""
  from bayesnas_jax import data  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for prefix, count in (("train", 64), ("t10k", 32)):
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = (rng.integers(0, 40, (count, 28, 28)) + labels[:, None, None] * 20).astype(np.uint8)
    data.write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte"), images)
    data.write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte"), labels)


def markdown_python_blocks(path, section=None):
  """The ```python blocks of a Markdown file, in order; with `section`, only
  those under the "## " heading that starts with it (up to the next one)."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if section is not None:
    text = text[text.index("## " + section):]
    end = text.find("\n## ", 1)
    text = text if end < 0 else text[:end]
  return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def perturbed(tree):
  """`tree` with 0.3·|N(0, 1)| added to every leaf (fixed key): non-trivial values
  for every variable, where batch norm's 1s and 0s would hide errors."""
  import jax  # pylint: disable=import-outside-toplevel
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  return treedef.unflatten([v + 0.3 * abs(jax.random.normal(k, v.shape, v.dtype))
                            for v, k in zip(leaves, keys)])


def hard_state(**fields):
  """A `prior.HardState` with the given fields (the others None, 0 rounds), as a
  derivation reads one."""
  from bayesnas_jax import prior  # pylint: disable=import-outside-toplevel
  return prior.HardState(**{"gamma": None, "omega": None, "keep": None, "rounds": 0, **fields})
