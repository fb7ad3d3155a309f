"""The quickstart set (`bayesnas_jax.data.quickstart`): a small balanced CIFAR-10
subset in the package, and how it is built from a tarball."""
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from bayesnas_jax import data
from bayesnas_jax.data import cifar_python, quickstart


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
