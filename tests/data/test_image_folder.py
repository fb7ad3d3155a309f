"""Image folders (`bayesnas_jax.data.image_folder`) on tiny PNG files written here:
exact pixels and sorted classes (the train order kept for the test split),
unreadable files named or skipped, grey images and size mismatches."""
import os

import numpy as np
import pytest
from PIL import Image

from bayesnas_jax import data


def _write_png(path, pixels):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)


def _make_image_folder(root, rng, splits={"train": {"b": 3, "a": 2}, "test": {"b": 2}}):
    """PNG folder with random pixels; returns {split: {path: pixels}}."""
    written = {}
    for split, classes in splits.items():
        for name, count in classes.items():
            for i in range(count):
                pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
                path = os.path.join(root, split, name, f"{i:03d}.png")
                _write_png(path, pixels)
                written[path] = (name, pixels)
    return written


def test_image_folder_loads_exact_pixels_and_sorted_classes(tmp_path):
    written = _make_image_folder(str(tmp_path), np.random.default_rng(0))
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    train = data.load_image_folder(str(tmp_path), "train")
    assert train.class_names == ("a", "b")
    assert train.images.shape == (5, 5, 7, 3) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int32
    np.testing.assert_array_equal(train.labels, [0, 0, 1, 1, 1])
    expected = [written[str(tmp_path / "train" / c / f"{i:03d}.png")][1]
                for c, n in (("a", 2), ("b", 3)) for i in range(n)]
    np.testing.assert_array_equal(train.images, np.stack(expected))


def test_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    _make_image_folder(str(tmp_path), np.random.default_rng(2))
    broken = tmp_path / "train" / "b" / "001.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError) as err:
        data.load_image_folder(str(tmp_path), "train")
    message = str(err.value)
    assert message.startswith(str(broken)) and "skip_unreadable" in message
    assert "\n" not in message and "BytesIO" not in message
    with pytest.raises(ValueError, match="001.png"):
        data.load_splits({"path": str(tmp_path)})
    train = data.load_image_folder(str(tmp_path), "train", skip_unreadable=True)
    assert train.skipped == 1 and len(train) == 4
    np.testing.assert_array_equal(train.labels, [0, 0, 1, 1])  # b/001 left out
    splits = data.load_splits({"path": str(tmp_path), "skip_unreadable": True})
    assert splits["train"].skipped == 1 and splits["test"].skipped == 0


def test_load_splits_keeps_train_class_order_for_test(tmp_path):
    _make_image_folder(str(tmp_path), np.random.default_rng(1))
    splits = data.load_splits({"path": str(tmp_path)})  # auto -> image_folder
    assert set(splits) == {"train", "test"}
    # test has only class "b", which is label 1 in train's order, not 0.
    np.testing.assert_array_equal(splits["test"].labels, [1, 1])
    assert splits["test"].class_names == ("a", "b")


def test_image_folder_grey_and_size_mismatch(tmp_path):
    for i in range(2):
        _write_png(str(tmp_path / "train" / "x" / f"{i}.png"),
                   np.full((4, 4), 10 * (i + 1), np.uint8))
    grey = data.load_image_folder(str(tmp_path), "train")
    assert grey.images.shape == (2, 4, 4, 1)
    assert grey.images[1, 0, 0, 0] == 20
    _write_png(str(tmp_path / "train" / "x" / "2.png"), np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="image size"):
        data.load_image_folder(str(tmp_path), "train")
