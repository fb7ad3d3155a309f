"""The quickstart dataset: a small class-balanced CIFAR-10 subset shipped in the package.

It lives in ``bayesnas_jax/data/quickstart/`` in image-folder layout
(``{train,test}/<class>/NNNN.jpg``) so that examples and smoke tests run without any
download. ``build_quickstart`` regenerates it from the CIFAR-10 JPEG tarball
(``train/<class>/NNNN.jpg``, ``test/<class>/NNNN.jpg``): for every split and class it
takes the first ``per_class[split]`` files in sorted file-name order and copies their
bytes unchanged (no re-encoding), then writes ``README.md`` with the computed counts,
sizes and the tarball's SHA-256.
"""
from __future__ import annotations

import collections
import hashlib
import os
import posixpath
import shutil
import tarfile

from bayesnas_jax.data.dataset import DataNotFoundError, Dataset
from bayesnas_jax.data.image_folder import IMAGE_EXTENSIONS, load_image_folder

DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart")
DEFAULT_PER_CLASS = {"train": 500, "test": 100}


def quickstart_path() -> str:
    """Folder of the shipped quickstart dataset (image-folder layout)."""
    if not os.path.isdir(os.path.join(DIRECTORY, "train")):
        raise DataNotFoundError(
            "quickstart dataset", [f"quickstart: no {DIRECTORY}/train"],
            "It ships inside the bayesnas_jax package; rebuild it with "
            "`python launch/make_quickstart_data.py cifar10-jpeg.tar.gz`.")
    return DIRECTORY


def load_quickstart(split: str = "train") -> Dataset:
    """The quickstart ``split`` ("train" or "test") decoded into a ``Dataset``."""
    return load_image_folder(quickstart_path(), split)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def select_members(archive: tarfile.TarFile, per_class: dict[str, int]
                   ) -> tuple[list[tarfile.TarInfo], dict[str, int]]:
    """The first ``per_class[split]`` images by sorted name of each split/class, and
    the number of images per split in the whole archive.

    Raises ValueError when a class has fewer images than asked for.
    """
    by_class = collections.defaultdict(list)
    for member in archive.getmembers():
        parts = posixpath.normpath(member.name).split("/")
        if parts[0] == ".":
            parts = parts[1:]
        if (member.isfile() and len(parts) == 3 and parts[0] in per_class
                and parts[2].lower().endswith(IMAGE_EXTENSIONS)
                and ".." not in parts and not member.name.startswith("/")):
            by_class[parts[0], parts[1]].append((parts[2], member))
    chosen = []
    for split, count in per_class.items():
        classes = sorted(c for s, c in by_class if s == split)
        if not classes:
            raise ValueError(f"tarball: no {split}/<class>/*.jpg members")
        for name in classes:
            files = sorted(by_class[split, name], key=lambda pair: pair[0])
            if len(files) < count:
                raise ValueError(f"per_class: {split}/{name} has {len(files)} images, "
                                 f"fewer than {count}")
            chosen += [member for _, member in files[:count]]
    available = collections.Counter()
    for (split, _), files in by_class.items():
        available[split] += len(files)
    return chosen, dict(available)


def _readme(tarball: str, per_class: dict[str, int], counts, available: dict[str, int],
            total_bytes: int) -> str:
    rows = "\n".join(
        f"| {split} | {len(classes)} | {per_class[split]} | {sum(classes.values())} |"
        for split, classes in counts.items())
    total = sum(sum(c.values()) for c in counts.values())
    source_counts = ", ".join(f"{n:,} {split} images" for split, n in
                              sorted(available.items(), key=lambda item: -item[1]))
    return f"""# Quickstart dataset: a small CIFAR-10 subset

Class-balanced subset of CIFAR-10 (Alex Krizhevsky, *Learning Multiple Layers of
Features from Tiny Images*, technical report, University of Toronto, 2009;
https://www.cs.toronto.edu/~kriz/cifar.html), shipped so that examples and smoke tests
run without a download. It is far too small to reproduce any published accuracy.

Layout (image folder, read by `bayesnas_jax.data.load_image_folder` or
`load_dataset(source="image_folder", path=quickstart_path())`):
`{{train,test}}/<class>/NNNN.jpg`, class folders
{", ".join(f"`{c}`" for c in sorted(next(iter(counts.values()))))}.

| split | classes | images per class | images |
| --- | --- | --- | --- |
{rows}

{total} images, {total_bytes:,} bytes of JPEG data.

## Provenance

- Source: `{os.path.basename(tarball)}` from the project's shared data
  (SHA-256 `{_sha256(tarball)}`).
  It holds CIFAR-10 as 32x32 RGB JPEGs re-encoded at about quality 75 (lossy:
  pixels differ slightly from the original CIFAR-10 arrays) in layout
  `<split>/<class>/NNNN.jpg`: {source_counts}.
- Selection: for each split and class, the first N files in sorted file-name order
  (N in the table above). No image was re-encoded: the files are the tarball's bytes.
- Regenerate with
  `python launch/make_quickstart_data.py PATH/TO/{os.path.basename(tarball)}`
  (this README is written by that script, numbers included).
"""


def build_quickstart(tarball: str, out_dir: str = DIRECTORY,
                     per_class: dict[str, int] | None = None) -> dict[str, int]:
    """Write the quickstart subset of ``tarball`` into ``out_dir``; returns
    ``{"files": ..., "bytes": ...}``.

    Existing ``out_dir/<split>`` folders are replaced; other files are left alone.
    """
    per_class = dict(per_class or DEFAULT_PER_CLASS)
    if any(int(n) != n or n <= 0 for n in per_class.values()):
        raise ValueError(f"per_class: want positive integers, got {per_class}")
    counts = collections.defaultdict(collections.Counter)
    total_bytes = 0
    with tarfile.open(tarball, "r:*") as archive:
        chosen, available = select_members(archive, per_class)
        for split in per_class:
            shutil.rmtree(os.path.join(out_dir, split), ignore_errors=True)
        # Extract in archive order so a compressed stream is only read forwards.
        for member in sorted(chosen, key=lambda m: m.offset_data):
            split, name, file_name = posixpath.normpath(member.name).split("/")[-3:]
            data = archive.extractfile(member).read()
            target_dir = os.path.join(out_dir, split, name)
            os.makedirs(target_dir, exist_ok=True)
            with open(os.path.join(target_dir, file_name), "wb") as f:
                f.write(data)
            counts[split][name] += 1
            total_bytes += len(data)
    ordered = {split: dict(sorted(counts[split].items())) for split in per_class}
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(_readme(tarball, per_class, ordered, available, total_bytes))
    return {"files": sum(sum(c.values()) for c in ordered.values()),
            "bytes": total_bytes}
