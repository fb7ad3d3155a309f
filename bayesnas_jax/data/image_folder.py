"""Image-folder source: ``<root>/<split>/<class>/*.jpg|*.jpeg|*.png``.

Class names are the sorted sub-directory names of the split, and a label is the class's
index in that order. Files are read in sorted order within each class, so the arrays are
a pure function of the directory contents. All images of a split must share one size.
Grey ("L") images stay one channel when every image of the split is grey; otherwise every
image is converted to RGB.
"""
from __future__ import annotations

import concurrent.futures
import io
import os

import numpy as np

from bayesnas_jax.data.dataset import DataNotFoundError, Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_image_folder(root: str, split: str,
                      class_names: tuple[str, ...] | None = None
                      ) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """File paths, int32 labels and class names of ``<root>/<split>``.

    Args:
      root: the folder holding one directory per split.
      split: split directory name, e.g. ``"train"``.
      class_names: fix the label order (e.g. the train split's, when listing test); by
        default the sorted class directories of this split.

    Raises:
      DataNotFoundError: ``<root>/<split>`` is not a directory or holds no images.
      ValueError: a class directory is not in ``class_names``.
    """
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise DataNotFoundError(
            "image folder", [f"image_folder: no directory {split_dir}"],
            f"Expected layout {root}/{split}/<class>/*.jpg|*.png.")
    found = sorted(d for d in os.listdir(split_dir)
                   if os.path.isdir(os.path.join(split_dir, d)))
    if class_names is None:
        class_names = tuple(found)
    else:
        class_names = tuple(class_names)
        extra = sorted(set(found) - set(class_names))
        if extra:
            raise ValueError(f"class_names: {split_dir} has classes {extra} not in "
                             f"{list(class_names)}")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        if not os.path.isdir(class_dir):
            continue
        files = sorted(f for f in os.listdir(class_dir)
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        paths += [os.path.join(class_dir, f) for f in files]
        labels += [label] * len(files)
    if not paths:
        raise DataNotFoundError(
            "image folder", [f"image_folder: no *.jpg/*.png under {split_dir}/<class>/"],
            f"Expected layout {root}/{split}/<class>/*.jpg|*.png.")
    return paths, np.asarray(labels, np.int32), class_names


def _decode(path: str) -> tuple[str, np.ndarray]:
    from PIL import Image  # Pillow is only needed by this source

    try:
        with open(path, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as image:
            image.load()
            mode = image.mode
            if mode not in ("L", "RGB"):
                image = image.convert("L" if mode in ("1", "I", "I;16", "F") else "RGB")
                mode = image.mode
            return mode, np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for broken files
        reason = " ".join(str(err).split()) or type(err).__name__
        reason = reason.split(" <_io.BytesIO")[0]  # PIL names the buffer, not the file
        raise UnreadableImageError(
            f"{path}: not a readable JPEG/PNG image ({reason}); delete or replace it, or set "
            f"data.skip_unreadable=True to skip such files") from None


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file."""


def _decode_chunk(paths: list[str], skip: bool) -> list[tuple[str, np.ndarray] | None]:
    out = []
    for path in paths:
        try:
            out.append(_decode(path))
        except UnreadableImageError:
            if not skip:
                raise
            out.append(None)
    return out


def decode_images(paths: list[str], num_threads: int | None = None,
                  skip_unreadable: bool = False):
    """Decode image files into one uint8 ``[N, H, W, C]`` array.

    Chunks of files are decoded on ``num_threads`` threads (default: the CPU count, at
    most 16); Pillow frees the GIL while it decodes. A file that cannot be decoded raises
    `UnreadableImageError` naming it; with ``skip_unreadable`` such files are left out
    and ``(images, kept_indices)`` is returned instead of the images alone.
    """
    num_threads = num_threads or min(16, os.cpu_count() or 1)
    chunk = max(1, -(-len(paths) // (4 * num_threads)))
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        decoded = [item for part in pool.map(_decode_chunk, chunks,
                                             [skip_unreadable] * len(chunks))
                   for item in part]
    kept = [i for i, item in enumerate(decoded) if item is not None]
    if not kept:
        raise UnreadableImageError(f"{os.path.dirname(paths[0])}: none of the {len(paths)} "
                                   f"image files could be decoded")
    paths = [paths[i] for i in kept]
    decoded = [decoded[i] for i in kept]
    all_grey = all(mode == "L" for mode, _ in decoded)
    first_shape = decoded[0][1].shape[:2]
    channels = 1 if all_grey else 3
    images = np.empty((len(paths), *first_shape, channels), np.uint8)
    for i, (path, (mode, pixels)) in enumerate(zip(paths, decoded)):
        if pixels.shape[:2] != first_shape:
            raise ValueError(f"image size: {path} is {pixels.shape[:2]}, but "
                             f"{paths[0]} is {first_shape}; resize the folder first")
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        images[i] = pixels if pixels.shape[-1] == channels else np.repeat(pixels, 3, -1)
    return (images, np.asarray(kept, np.int64)) if skip_unreadable else images


def load_image_folder(root: str, split: str = "train",
                      class_names: tuple[str, ...] | None = None,
                      num_threads: int | None = None,
                      skip_unreadable: bool = False) -> Dataset:
    """Decode ``<root>/<split>/<class>/*`` into a ``Dataset`` (see module docstring).

    A file that cannot be decoded stops the load with a one-line error naming it;
    with ``skip_unreadable`` it is left out and counted in ``Dataset.skipped``."""
    paths, labels, class_names = list_image_folder(root, split, class_names)
    if not skip_unreadable:
        images = decode_images(paths, num_threads)
        return Dataset(images, labels, class_names, f"image_folder:{root} ({split})")
    images, kept = decode_images(paths, num_threads, skip_unreadable=True)
    skipped = len(paths) - len(kept)
    note = f", {skipped} unreadable files skipped" if skipped else ""
    return Dataset(images, labels[kept], class_names,
                   f"image_folder:{root} ({split}{note})", skipped=skipped)
