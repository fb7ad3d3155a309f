"""On-device augmentation (`bayesnas_jax.data.augment`): shapes, determinism and jit,
per-channel normalisation, flips, crops and cutout."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnas_jax import data


def _batch(seed=0, shape=(8, 32, 32, 3)):
    return jnp.asarray(np.random.default_rng(seed).integers(1, 256, shape, np.uint8))


def test_augment_shapes_determinism_and_jit():
    images = _batch()
    augment = jax.jit(functools.partial(data.augment_batch, crop_padding=4,
                                        cutout_length=16))
    out = augment(jax.random.PRNGKey(0), images)
    assert out.shape == images.shape and out.dtype == jnp.float32
    np.testing.assert_array_equal(out, augment(jax.random.PRNGKey(0), images))
    assert not np.array_equal(out, augment(jax.random.PRNGKey(1), images))
    plain = data.augment_batch(jax.random.PRNGKey(0), images, crop_padding=0,
                               flip=False, cutout_length=0)
    np.testing.assert_allclose(plain, data.preprocess(images), rtol=0, atol=0)


def test_preprocess_normalises_per_channel():
    mean = np.asarray(data.CIFAR10_MEAN)
    images = jnp.asarray(np.round(mean * 255).astype(np.uint8)[None, None, None])
    out = data.preprocess(images)
    np.testing.assert_allclose(out[0, 0, 0], (np.round(mean * 255) / 255 - mean)
                               / np.asarray(data.CIFAR10_STD), atol=1e-6)
    assert np.all(np.abs(out) < 0.01)
    with pytest.raises(ValueError, match="mean/std"):
        data.normalize(jnp.ones((1, 2, 2, 3)), (0.5, 0.5), (1.0, 1.0))


def test_random_flip_mirrors_or_keeps_each_example():
    images = jnp.broadcast_to(_batch(1, (1, 4, 6, 3)), (64, 4, 6, 3))
    out = np.asarray(data.random_flip(jax.random.PRNGKey(3), images))
    original, mirrored = np.asarray(images[0]), np.asarray(images[0])[:, ::-1]
    is_original = [np.array_equal(o, original) for o in out]
    is_mirrored = [np.array_equal(o, mirrored) for o in out]
    assert all(a != b for a, b in zip(is_original, is_mirrored))
    assert 10 < sum(is_mirrored) < 54


def test_random_crop_is_a_window_of_the_zero_padded_image():
    images = _batch(2, (16, 8, 8, 1))
    out = np.asarray(data.random_crop(jax.random.PRNGKey(5), images, 4))
    padded = np.pad(np.asarray(images), ((0, 0), (4, 4), (4, 4), (0, 0)))
    offsets = set()
    for b in range(16):
        hits = [(y, x) for y in range(9) for x in range(9)
                if np.array_equal(padded[b, y:y + 8, x:x + 8], out[b])]
        assert hits, f"example {b} is no window"
        offsets.add(hits[0])
    assert len(offsets) > 4  # offsets really vary per example
    np.testing.assert_array_equal(data.random_crop(jax.random.PRNGKey(5), images, 0),
                                  images)


def test_cutout_zeroes_one_clipped_square_per_example():
    images = jnp.ones((32, 32, 32, 3), jnp.float32)
    out = np.asarray(data.cutout(jax.random.PRNGKey(7), images, 16))
    assert np.array_equal(out[..., 0], out[..., 2])  # same square in every channel
    sizes = set()
    for example in out[..., 0]:
        rows, cols = np.nonzero(example == 0)
        assert rows.size, "nothing cut"
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert rows.size == height * width  # one filled rectangle
        assert 8 <= height <= 16 and 8 <= width <= 16
        sizes.add(rows.size)
    assert 256 in sizes and len(sizes) > 1  # full squares inside, clipped at borders
    np.testing.assert_array_equal(data.cutout(jax.random.PRNGKey(7), images, 0), images)
