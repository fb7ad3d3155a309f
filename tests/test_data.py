"""Tests of bayesnas_jax.data: every source on tiny files written here, the single
missing-data error, seeded splits, resumable batches, on-device augmentation and the
quickstart set."""
import functools
import gzip
import io
import os
import pickle
import tarfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from bayesnas_jax import data
from bayesnas_jax.data import cifar_python, idx, quickstart

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


# --------------------------------------------------------------------------- sources

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


@pytest.mark.parametrize("gz, sep", [(True, "-"), (False, "."), (True, ".")])
def test_idx_round_trip(tmp_path, gz, sep):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 9, 1, 2], np.uint8)
    ext = ".gz" if gz else ""
    data.write_idx(str(tmp_path / f"t10k-images{sep}idx3-ubyte{ext}"), images)
    data.write_idx(str(tmp_path / f"t10k-labels{sep}idx1-ubyte{ext}"), labels)
    raw = (tmp_path / f"t10k-images{sep}idx3-ubyte{ext}").read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / f"t10k-images{sep}"
                                                     f"idx3-ubyte{ext}")), images)
    test = data.load_dataset(name="fashion_mnist", path=str(tmp_path), split="test")
    assert test.source.startswith("idx:")
    assert test.images.shape == (6, 28, 28, 1)
    np.testing.assert_array_equal(test.images[..., 0], images)
    np.testing.assert_array_equal(test.labels, labels)
    assert test.class_names == idx.CLASS_NAMES["fashion_mnist"]


def test_idx_rejects_non_idx_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04junk")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(gzip.compress(b"\0\0\x08\x01"))
    with pytest.raises(ValueError, match="IDX"):
        data.load_idx(str(tmp_path), "train")


def _write_cifar_batches(directory, rng, per_batch=2, str_keys=False):
    os.makedirs(directory)
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {key("data"): rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 key("labels"): [int(v) for v in rng.integers(0, 10, per_batch)],
                 key("batch_label"): key("whatever")}
        with open(os.path.join(directory, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
        batches[name] = batch
    meta = {key("label_names"): [key(n) for n in cifar_python.CLASS_NAMES[::-1]]}
    with open(os.path.join(directory, "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return {n: {k.decode() if isinstance(k, bytes) else k: v for k, v in b.items()}
            for n, b in batches.items()}


@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar_python_round_trip(tmp_path, str_keys):
    batches = _write_cifar_batches(str(tmp_path / "cifar-10-batches-py"),
                                   np.random.default_rng(3), str_keys=str_keys)
    # The parent folder is accepted and auto picks this format.
    train = data.load_dataset(path=str(tmp_path), split="train")
    assert train.source.startswith("cifar10_python:")
    assert train.images.shape == (10, 32, 32, 3)
    first = batches["data_batch_1"]["data"][0]
    np.testing.assert_array_equal(train.images[0, :, :, 0], first[:1024].reshape(32, 32))
    np.testing.assert_array_equal(train.images[0, :, :, 2], first[2048:].reshape(32, 32))
    last = batches["data_batch_5"]
    np.testing.assert_array_equal(train.labels[-2:], last["labels"])
    assert train.class_names == cifar_python.CLASS_NAMES[::-1]  # read from batches.meta
    test = data.load_dataset(source="cifar10_python", path=str(tmp_path), split="test")
    np.testing.assert_array_equal(test.labels, batches["test_batch"]["labels"])


def test_cifar_python_refuses_code_in_pickles(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({"data": os.getcwd, "labels": []}, f)  # a global that is not numpy
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.load_cifar10_python(str(tmp_path), "test")


def test_tfds_mock_data_source_without_tensorflow():
    """tfds.testing.mock_data works with tfds.data_source without TensorFlow."""
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        direct = tfds.data_source("mnist", split="test")
        expected = np.stack([np.asarray(direct[i]["image"]) for i in range(5)])
        expected_labels = [int(direct[i]["label"]) for i in range(5)]
        loaded = data.load_dataset(name="mnist", split="test")  # auto -> tfds
    assert loaded.source.startswith("tfds:mnist")
    assert loaded.images.shape == (5, 28, 28, 1) and loaded.images.dtype == np.uint8
    np.testing.assert_array_equal(loaded.images, expected)
    np.testing.assert_array_equal(loaded.labels, expected_labels)
    assert loaded.num_classes == 10


def test_missing_data_one_error_lists_every_attempt(tmp_path):
    start = time.perf_counter()
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_dataset(name="cifar10", path=str(tmp_path / "nowhere"),
                          data_dir=str(tmp_path / "tfds"))
    assert time.perf_counter() - start < 10  # never tries to download
    error = info.value
    assert isinstance(error, FileNotFoundError)
    assert [t.split(":")[0] for t in error.tried] == [
        "cifar10_python", "idx", "idx", "image_folder", "tfds"]
    message = str(error)
    for needle in ("nowhere", str(tmp_path / "tfds"), "tfds build", "<class>/*.jpg",
                   "quickstart_path"):
        assert needle in message, needle


@pytest.mark.parametrize("fields, field", [
    ({"name": "x", "source": "hdf5"}, "source"),
    ({"name": "x", "batch": 3}, "batch"),
    ({"name": "x", "split": ""}, "split"),
    ({"name": "x", "splits": "train"}, "splits"),
    ({"source": "auto"}, "name"),
    ({"source": "tfds", "path": "/tmp"}, "name"),
    ({"source": "idx", "name": "x"}, "path"),
    ({"name": 3}, "name"),
])
def test_bad_spec_fields_name_the_field(fields, field):
    with pytest.raises(ValueError) as info:
        data.load_dataset(fields)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_cache_dir_second_load_reads_npz(tmp_path):
    rng = np.random.default_rng(4)
    source = tmp_path / "raw"
    source.mkdir()
    data.write_idx(str(source / "train-images-idx3-ubyte.gz"),
                   rng.integers(0, 256, (4, 3, 3), dtype=np.uint8))
    data.write_idx(str(source / "train-labels-idx1-ubyte.gz"), np.arange(4))
    spec = {"path": str(source), "cache_dir": str(tmp_path / "cache")}
    first = data.load_dataset(spec)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    for f in source.iterdir():
        f.unlink()  # only the cache can answer now
    second = data.load_dataset(spec)
    assert "cached" in second.source
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.class_names == first.class_names


def test_dataset_validates_arrays():
    with pytest.raises(ValueError, match="images"):
        data.Dataset(np.zeros((2, 3, 3, 1), np.float32), np.zeros(2), ("a",))
    with pytest.raises(ValueError, match="labels"):
        data.Dataset(np.zeros((2, 3, 3, 1), np.uint8), np.array([0, 1]), ("a",))


# --------------------------------------------------------------- splits and batches

def test_split_indices_seeded_disjoint_and_sized():
    warmup, search = data.split_indices(1000, (0.1, 0.9), seed=7)
    assert (len(warmup), len(search)) == (100, 900)
    np.testing.assert_array_equal(np.sort(np.concatenate([warmup, search])),
                                  np.arange(1000))
    again = data.split_indices(1000, (0.1, 0.9), seed=7)
    np.testing.assert_array_equal(again[0], warmup)
    other = data.split_indices(1000, (0.1, 0.9), seed=8)
    assert not np.array_equal(other[0], warmup)
    part, = data.split_indices(10, (0.5,), seed=0, shuffle=False)
    np.testing.assert_array_equal(part, np.arange(5))
    for bad in [(0.6, 0.6), (0.0, 0.5), (-0.1,), ()]:
        with pytest.raises(ValueError, match="fractions"):
            data.split_indices(10, bad, seed=0)


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


# --------------------------------------------------------------------- augmentation

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


# ----------------------------------------------------------------------- quickstart

def test_quickstart_is_balanced_cifar10():
    train = data.load_dataset(source="image_folder", path=data.quickstart_path())
    test = data.load_quickstart("test")
    assert train.class_names == cifar_python.CLASS_NAMES == test.class_names
    assert train.image_shape == (32, 32, 3)
    counts, test_counts = train.class_counts(), test.class_counts()
    assert len(set(counts)) == 1 and counts[0] >= 100
    assert len(set(test_counts)) == 1 and test_counts[0] >= 20
    size = sum(os.path.getsize(os.path.join(d, f))
               for d, _, files in os.walk(data.quickstart_path()) for f in files)
    assert size < 6.5e6


def test_build_quickstart_copies_first_sorted_files(tmp_path):
    members = {}
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            for i in (3, 1, 0, 2):
                buffer = io.BytesIO()
                Image.fromarray(np.full((2, 2, 3), i * 40, np.uint8)).save(buffer, "JPEG")
                members[f"{split}/{name}/{i:04d}.jpg"] = buffer.getvalue()
    tarball = tmp_path / "mini.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for member_name, payload in members.items():
            info = tarfile.TarInfo(member_name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    out = tmp_path / "quick"
    result = quickstart.build_quickstart(str(tarball), str(out), {"train": 2, "test": 1})
    assert result["files"] == 6
    assert sorted(os.listdir(out / "train" / "dog")) == ["0000.jpg", "0001.jpg"]
    assert os.listdir(out / "test" / "cat") == ["0000.jpg"]
    assert (out / "train" / "cat" / "0001.jpg").read_bytes() == members[
        "train/cat/0001.jpg"]
    readme = (out / "README.md").read_text()
    assert "| train | 2 | 2 | 4 |" in readme and "8 train images" in readme
    with pytest.raises(ValueError, match="per_class"):
        quickstart.build_quickstart(str(tarball), str(out), {"train": 5})


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package():
    test = data.load_dataset(name="fashion_mnist", source="idx", split="test")
    assert test.images.shape == (10000, 28, 28, 1)
    assert test.class_names[9] == "Ankle boot"
    np.testing.assert_array_equal(test.class_counts(), np.full(10, 1000))
