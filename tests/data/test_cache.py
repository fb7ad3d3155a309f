"""The `.npz` cache (`bayesnas_jax.data.cache`): a second load reads the cache alone."""
import numpy as np

from bayesnas_jax import data


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
