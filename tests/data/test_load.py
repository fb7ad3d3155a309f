"""The one entry point (`bayesnas_jax.data.load`): the single missing-data error that
lists every attempt and never downloads, and bad spec fields named."""
import time

import pytest

from bayesnas_jax import data


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
