"""On-device augmentation and normalisation of uint8 batches (pure, jittable jax).

The CIFAR recipe used by DARTS-style searches (and BayesNAS) is, per example:
random ``H x W`` crop of the image zero-padded by ``p = 4`` on each side, horizontal flip
with probability 1/2, conversion to ``[0, 1]``, per-channel normalisation
``x' = (x - mean_c) / std_c``, and cutout: a ``L x L`` square (``L = 16``) around a
uniformly drawn centre, clipped at the border, set to zero (after normalisation).
Every function works on a whole batch ``[B, H, W, C]`` at once; per-example randomness
comes from one PRNG key, so equal keys give equal outputs. Shape arguments
(``padding``, ``length``) are Python ints, static under ``jax.jit``.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def to_float(images: jax.Array, dtype=jnp.float32) -> jax.Array:
    """uint8 ``[0, 255]`` -> ``dtype`` in ``[0, 1]``."""
    return images.astype(dtype) / jnp.asarray(255, dtype)


def normalize(images: jax.Array, mean: Sequence[float] | jax.Array,
              std: Sequence[float] | jax.Array) -> jax.Array:
    """``(x - mean_c) / std_c`` over the last (channel) axis."""
    mean = jnp.asarray(mean, images.dtype)
    std = jnp.asarray(std, images.dtype)
    if mean.shape not in ((), (1,), images.shape[-1:]) or std.shape != mean.shape:
        raise ValueError(f"mean/std: want {images.shape[-1]} channel values, got shapes "
                         f"{mean.shape}, {std.shape}")
    return (images - mean) / std


def random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    """Per-example ``H x W`` crop of the batch zero-padded by ``padding`` pixels.

    Offsets are uniform in ``[0, 2 padding]`` on each axis; padding 0 is the identity.
    """
    if padding < 0:
        raise ValueError(f"padding: want >= 0, got {padding}")
    if padding == 0:
        return images
    batch, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                     (height, width, channels))

    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirror each example left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def cutout_mask(key: jax.Array, batch: int, height: int, width: int,
                length: int) -> jax.Array:
    """Boolean ``[B, H, W]``, False inside each example's cut square.

    The centre ``(c_y, c_x)`` is uniform over the pixels, and the square covers rows
    ``[clip(c_y - L/2), clip(c_y + L/2))`` and likewise columns (``L/2`` rounded down).
    """
    key_y, key_x = jax.random.split(key)
    centre_y = jax.random.randint(key_y, (batch, 1), 0, height)
    centre_x = jax.random.randint(key_x, (batch, 1), 0, width)
    rows, cols = jnp.arange(height)[None], jnp.arange(width)[None]
    half = length // 2
    in_rows = (rows >= centre_y - half) & (rows < centre_y + length - half)
    in_cols = (cols >= centre_x - half) & (cols < centre_x + length - half)
    return ~(in_rows[:, :, None] & in_cols[:, None, :])


def cutout(key: jax.Array, images: jax.Array, length: int) -> jax.Array:
    """Zero a ``length x length`` square per example (see ``cutout_mask``); 0 = off."""
    if length < 0:
        raise ValueError(f"length: want >= 0, got {length}")
    if length == 0:
        return images
    batch, height, width, _ = images.shape
    keep = cutout_mask(key, batch, height, width, length)
    return jnp.where(keep[..., None], images, jnp.zeros((), images.dtype))


def preprocess(images: jax.Array, mean: Sequence[float] = CIFAR10_MEAN,
               std: Sequence[float] = CIFAR10_STD, dtype=jnp.float32) -> jax.Array:
    """Evaluation transform: uint8 -> float in ``[0, 1]`` -> normalised."""
    return normalize(to_float(images, dtype), mean, std)


def augment_batch(key: jax.Array, images: jax.Array, *, crop_padding: int = 4,
                  flip: bool = True, cutout_length: int = 0,
                  mean: Sequence[float] = CIFAR10_MEAN,
                  std: Sequence[float] = CIFAR10_STD, dtype=jnp.float32) -> jax.Array:
    """Training transform of a uint8 batch: crop, flip, float, normalise, cutout.

    Args:
      key: PRNG key; the batch's augmentation is a pure function of it.
      images: uint8 ``[B, H, W, C]``.
      crop_padding: zero padding of the random crop (0 turns cropping off).
      flip: random horizontal flips.
      cutout_length: side of the cutout square; 0 (the default, as in search) turns
        cutout off — the DARTS evaluation protocol uses 16.
      mean, std: per-channel statistics of the ``[0, 1]`` images.
      dtype: output float dtype.

    Returns:
      ``dtype`` ``[B, H, W, C]``.
    """
    key_crop, key_flip, key_cutout = jax.random.split(key, 3)
    images = random_crop(key_crop, images, crop_padding)
    if flip:
        images = random_flip(key_flip, images)
    images = preprocess(images, mean, std, dtype)
    return cutout(key_cutout, images, cutout_length)
