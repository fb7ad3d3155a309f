"""Batches by index (`bayesnas_jax.data.batching`): exact resume, a new order every
epoch, full coverage, index subsets and endless streams."""
import numpy as np
import pytest

from bayesnas_jax import data


def _tiny_dataset(n=23):
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1),
                                                                           np.uint8)
    return data.Dataset(images, np.arange(n) % 3, ("a", "b", "c"))


def test_batches_resume_exactly_and_change_per_epoch():
    dataset = _tiny_dataset()
    full = list(data.iterate_batches(dataset, 4, seed=3, epoch=2))
    assert len(full) == 5 == data.steps_per_epoch(23, 4)
    resumed = list(data.iterate_batches(dataset, 4, seed=3, epoch=2, start_step=3))
    assert len(resumed) == 2
    for a, b in zip(full[3:], resumed):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert full[0]["image"].dtype == np.uint8 and full[0]["label"].dtype == np.int32
    np.testing.assert_array_equal(full[1]["label"], full[1]["image"][:, 0, 0, 0] % 3)
    next_epoch = list(data.iterate_batches(dataset, 4, seed=3, epoch=3))
    assert not np.array_equal(full[0]["image"], next_epoch[0]["image"])
    np.testing.assert_array_equal(
        data.batch_indices(23, 4, seed=3, epoch=2, step=4), full[4]["image"][:, 0, 0, 0])


def test_batches_cover_epoch_and_respect_indices():
    dataset = _tiny_dataset()
    batches = list(data.iterate_batches(dataset, 4, seed=0, drop_remainder=False))
    assert [len(b["label"]) for b in batches] == [4, 4, 4, 4, 4, 3]
    seen = np.concatenate([b["image"][:, 0, 0, 0] for b in batches])
    np.testing.assert_array_equal(np.sort(seen), np.arange(23))
    subset = np.array([1, 5, 8, 13, 21])
    seen = np.concatenate([b["image"][:, 0, 0, 0] for b in data.iterate_batches(
        dataset, 2, seed=0, indices=subset, drop_remainder=False)])
    np.testing.assert_array_equal(np.sort(seen), subset)
    ordered = list(data.iterate_batches(dataset, 5, seed=0, shuffle=False))
    np.testing.assert_array_equal(ordered[1]["image"][:, 0, 0, 0], np.arange(5, 10))


def test_stream_resumes_across_epoch_boundary():
    dataset = _tiny_dataset()
    stream = data.stream_batches(dataset, 4, seed=9)
    full = [next(stream)["image"] for _ in range(13)]  # 5 steps per epoch
    resumed = data.stream_batches(dataset, 4, seed=9, start_step=4)
    for expected in full[4:]:
        np.testing.assert_array_equal(next(resumed)["image"], expected)
    with pytest.raises(ValueError, match="batch_size"):
        next(data.stream_batches(dataset, 24, seed=0))
