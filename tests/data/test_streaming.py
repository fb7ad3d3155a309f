"""The grain pipeline (`bayesnas_jax.data.streaming`) on a tiny image folder:
exact resume through an orbax checkpoint, disjoint covering shards, shapes."""
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from bayesnas_jax.data import streaming

NUM = 14  # records; image i is filled with the value 10·i + 5, so a crop names its record


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("stream")
  rng = np.random.default_rng(0)
  for i in range(NUM):
    cls = f"c{i % 3}"
    os.makedirs(root / "train" / cls, exist_ok=True)
    height, width = int(rng.integers(10, 20)), int(rng.integers(10, 20))
    pixels = np.full((height, width, 3), 10 * i + 5, np.uint8)
    pixels[0, :, 1] = rng.integers(0, 256, width)  # texture for the train crops
    Image.fromarray(pixels).save(root / "train" / cls / f"{i:02d}.png")
  return str(root)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_batches_have_the_promised_shapes(folder):
  loader = streaming.make_loader(streaming.image_folder_source(folder), batch_size=4,
                                 image_size=8, train=True, seed=0, shard_index=0,
                                 shard_count=1)
  batch = next(iter(loader))
  assert batch["image"].shape == (4, 8, 8, 3) and batch["image"].dtype == np.uint8
  assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32


def test_resume_through_orbax_gives_the_same_batches(folder, tmp_path):
  def loader(workers):
    return streaming.make_loader(streaming.image_folder_source(folder), batch_size=3,
                                 image_size=8, train=True, seed=5, worker_count=workers,
                                 shard_index=0, shard_count=1)
  straight = _take(iter(loader(2)), 9)  # spans two epochs (14 // 3 = 4 per epoch)
  first = iter(loader(2))
  head = _take(first, 4)
  manager = ocp.CheckpointManager(str(tmp_path / "ckpt"), item_names=("data",))
  manager.save(1, args=ocp.args.Composite(data=streaming.save_args(first)))
  manager.wait_until_finished()
  resumed = iter(loader(2))
  manager.restore(1, args=ocp.args.Composite(data=streaming.restore_args(resumed)))
  tail = _take(resumed, 5)
  for got, want in zip(head + tail, straight):
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])
  # Shuffled and augmented: the second epoch is not the first again.
  assert not np.array_equal(straight[0]["image"], straight[4]["image"])


@pytest.mark.parametrize("train", [False, True])
def test_shards_are_disjoint_and_cover_the_data(folder, train):
  seen = []
  for index in range(3):
    loader = streaming.make_loader(streaming.image_folder_source(folder), batch_size=1,
                                   image_size=4, train=train, seed=1, num_epochs=1,
                                   shard_index=index, shard_count=3)
    # The centre pixel of any crop is the record's fill value (10·i + 5).
    ids = [int(b["image"][0, 2, 2, 0]) // 10 for b in loader]
    seen.append(set(ids))
    assert len(ids) == len(set(ids))
  assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
  union = set().union(*seen)
  if train:  # equal steps per host: the remainder (14 mod 3 = 2) is dropped
    assert len(union) == NUM - NUM % 3 and union <= set(range(NUM))
  else:
    assert union == set(range(NUM))


def test_bad_arguments_are_one_line(folder):
  source = streaming.image_folder_source(folder)
  with pytest.raises(ValueError, match="shard_index"):
    streaming.make_loader(source, batch_size=2, image_size=8, train=True, shard_index=3,
                          shard_count=3)
  with pytest.raises(ValueError, match="batch_size"):
    streaming.make_loader(source, batch_size=0, image_size=8, train=True, shard_index=0,
                          shard_count=1)
