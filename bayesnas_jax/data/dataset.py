"""The in-memory dataset every source decodes into, and the one error for missing data.

A dataset is decoded once into host memory as ``images`` (uint8, ``[N, H, W, C]``) and
``labels`` (int32, ``[N]``); batches are then cut by fancy indexing, so reading never
bounds the step time. Conversion to float, augmentation and normalisation happen on
device (``bayesnas_jax.data.augment``).
"""
from __future__ import annotations

import dataclasses

import numpy as np


class DataNotFoundError(FileNotFoundError):
    """No source could provide the requested data.

    ``tried`` lists one line per location/source attempted, and the message ends with how
    to provide the data, so a user sees every place that was looked at in one error.
    """

    def __init__(self, what: str, tried: list[str] | tuple[str, ...], hint: str = ""):
        self.what = what
        self.tried = tuple(tried)
        self.hint = hint
        lines = [f"{what}: not found. Tried:"]
        lines += [f"  - {line}" for line in self.tried] or ["  (nothing)"]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))

    def __reduce__(self):  # keep it picklable despite the custom __init__
        return (type(self), (self.what, self.tried, self.hint))


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Decoded images and labels of one split.

    Attributes:
      images: uint8 ``[N, H, W, C]``.
      labels: int32 ``[N]``, indices into ``class_names``.
      class_names: label index -> name (``str(i)`` where the source has no names).
      source: where the arrays came from, for logs (e.g. ``"idx:/data/fmnist (train)"``).
      skipped: unreadable files left out (``data.skip_unreadable``).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str = ""
    skipped: int = 0

    def __post_init__(self):
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images: want uint8 [N, H, W, C], got {images.dtype} "
                             f"{images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels: want shape ({images.shape[0]},), got "
                             f"{labels.shape}")
        labels = labels.astype(np.int32, copy=False)
        num_classes = len(self.class_names)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels: values must lie in [0, {num_classes}), got "
                             f"[{labels.min()}, {labels.max()}]")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)``."""
        return tuple(int(d) for d in self.images.shape[1:])

    def subset(self, indices: np.ndarray) -> "Dataset":
        """The examples at ``indices`` (a copy, in that order)."""
        indices = np.asarray(indices)
        return Dataset(self.images[indices], self.labels[indices], self.class_names,
                       self.source)

    def class_counts(self) -> np.ndarray:
        """Examples per class, ``[num_classes]``."""
        return np.bincount(self.labels, minlength=self.num_classes)
