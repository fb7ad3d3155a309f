"""The one entry point: a data spec in, decoded uint8 ``Dataset`` out.

A spec is a mapping (a dict or an ml-collections ``ConfigDict``) with these fields, all
optional except that a ``name`` or a ``path`` must be given:

  source     "auto" | "tfds" | "image_folder" | "idx" | "cifar10_python" (default auto)
  name       dataset name: the TFDS name ("cifar10", "fashion_mnist"), also used to pick
             label names and well-known local folders for the file formats
  path       local folder for image_folder / idx / cifar10_python
  data_dir   TFDS data directory (default: TFDS's own)
  split      split to load by ``load_dataset`` (default "train"; TFDS slicing allowed)
  splits     splits to load by ``load_splits`` (default ("train", "test"))
  cache_dir  if set, decoded splits are saved there as .npz and read back next time
  image_key, label_key   TFDS feature names (default "image", "label")
  skip_unreadable  leave out image-folder files that cannot be decoded (default False:
             such a file stops the load with an error naming it); the count is in
             ``Dataset.skipped`` and the run's summary

``source="auto"`` tries, in order: the file formats at ``path`` (CIFAR-10 python batches,
IDX, image folder), the same formats at well-known local folders for ``name``, then
TFDS. If nothing provides the data, one ``DataNotFoundError`` lists every place tried and
how to provide the data.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from bayesnas_jax.data import cache, cifar_python, idx, image_folder, tfds_source
from bayesnas_jax.data.dataset import DataNotFoundError, Dataset

SOURCES = ("auto", "tfds", "image_folder", "idx", "cifar10_python")
FILE_SOURCES = ("cifar10_python", "idx", "image_folder")
DEFAULTS = {
    "source": "auto", "name": "", "path": "", "data_dir": "", "split": "train",
    "splits": ("train", "test"), "cache_dir": "", "image_key": "image",
    "label_key": "label", "skip_unreadable": False,
}
# Folders where system packages put datasets (Debian's dataset-fashion-mnist).
KNOWN_LOCATIONS = {"fashion_mnist": ("/usr/share/datasets/fashion-mnist",)}

HINT = (
    "How to provide it: set data.path to a folder holding <split>/<class>/*.jpg|*.png "
    "(image_folder), train-images-idx3-ubyte.gz and friends (idx), or "
    "cifar-10-batches-py (cifar10_python); or prepare the TFDS dataset with "
    "`tfds build NAME --file_format=array_record --data_dir=DIR` on a machine with "
    "TensorFlow and internet, copy DIR here and set data.data_dir=DIR. To try the code "
    "without any download: data.path = bayesnas_jax.data.quickstart_path() "
    "(a small CIFAR-10 subset shipped with the package).")


def resolve_spec(spec: Mapping | None = None, **overrides) -> dict:
    """Defaults filled in, fields checked; raises a one-line ValueError naming a bad
    field."""
    given = dict(spec.items()) if spec is not None else {}
    given.update(overrides)
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"data spec: unknown field {unknown[0]!r} (known: "
                         f"{', '.join(sorted(DEFAULTS))})")
    fields = {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    for key in ("source", "name", "path", "data_dir", "split", "cache_dir", "image_key",
                "label_key"):
        if not isinstance(fields[key], (str, os.PathLike)):
            raise ValueError(f"{key}: want a string, got {fields[key]!r}")
        fields[key] = os.fspath(fields[key])
    for key in ("path", "data_dir", "cache_dir"):
        fields[key] = os.path.expanduser(fields[key])
    if fields["source"] not in SOURCES:
        raise ValueError(f"source: want one of {', '.join(SOURCES)}; got "
                         f"{fields['source']!r}")
    if not fields["split"]:
        raise ValueError("split: must not be empty")
    splits = fields["splits"]
    if isinstance(splits, str) or not splits or not all(
            isinstance(s, str) and s for s in splits):
        raise ValueError(f"splits: want a non-empty sequence of split names, got "
                         f"{splits!r}")
    fields["splits"] = tuple(splits)
    if not fields["name"] and not fields["path"]:
        raise ValueError("name: give data.name (a TFDS name) or data.path (a local "
                         "folder)")
    if fields["source"] == "tfds" and not fields["name"]:
        raise ValueError("name: source 'tfds' needs a TFDS dataset name")
    return fields


def _attempts(fields: dict) -> list[tuple[str, str]]:
    """(source, location) pairs to try, in order."""
    source, name = fields["source"], fields["name"]
    folders = [fields["path"]] if fields["path"] else list(KNOWN_LOCATIONS.get(name, ()))
    if source == "auto":
        attempts = [(s, folder) for folder in folders for s in FILE_SOURCES]
        if name:
            attempts.append(("tfds", fields["data_dir"]))
        return attempts
    if source == "tfds":
        return [("tfds", fields["data_dir"])]
    if not folders:
        raise ValueError(f"path: source {source!r} needs data.path (a local folder)")
    return [(source, folder) for folder in folders]


def _load_from(source: str, location: str, fields: dict, split: str,
               class_names: tuple[str, ...] | None) -> Dataset:
    name = fields["name"]
    if source == "tfds":
        return tfds_source.load_tfds(name, split, location or None, fields["image_key"],
                                     fields["label_key"])
    if source == "image_folder":
        return image_folder.load_image_folder(location, split, class_names,
                                              skip_unreadable=bool(fields["skip_unreadable"]))
    if source == "idx":
        if split not in idx.SPLIT_PREFIXES:  # e.g. "validation": not an IDX split
            raise DataNotFoundError("IDX files", [f"idx: no split {split!r} (IDX has "
                                                  f"train/test) in {location}"])
        return idx.load_idx(location, split, class_names or idx.CLASS_NAMES.get(name))
    if split not in cifar_python.SPLIT_FILES:
        raise DataNotFoundError("CIFAR-10 python batches", [
            f"cifar10_python: no split {split!r} (it has train/test) in {location}"])
    return cifar_python.load_cifar10_python(location, split)


def _load_split(fields: dict, split: str, class_names=None) -> tuple[Dataset, str]:
    """Load one split; returns it and the source that provided it."""
    request = {k: fields[k] for k in ("source", "name", "path", "data_dir", "image_key",
                                      "label_key")}
    if fields["skip_unreadable"]:
        request["skip_unreadable"] = True
    request["split"] = split
    cache_path = cache.cache_file(fields["cache_dir"], request) if fields["cache_dir"] \
        else None
    if cache_path:
        cached = cache.load_cached(cache_path)
        if cached is not None:
            return cached, cached.source.split(":", 1)[0]
    tried = []
    for source, location in _attempts(fields):
        try:
            dataset = _load_from(source, location, fields, split, class_names)
        except DataNotFoundError as error:
            tried += error.tried
            continue
        if cache_path:
            cache.save_cached(cache_path, dataset)
        return dataset, source
    what = f"dataset {fields['name'] or fields['path']!r} split {split!r}"
    hint = HINT
    if fields["source"] == "tfds" or (fields["source"] == "auto" and fields["name"]):
        hint += " " + tfds_source.HINT.format(name=fields["name"])
    raise DataNotFoundError(what, tried, hint)


def load_dataset(spec: Mapping | None = None, **overrides) -> Dataset:
    """Decode one split (``spec["split"]``) into a uint8 ``Dataset``.

    Args:
      spec: data fields (see module docstring); a dict or ``ConfigDict``.
      **overrides: fields that replace those in ``spec``.

    Raises:
      DataNotFoundError: no source had the data; the message lists all that was tried.
      ValueError: a field is missing or malformed (the message names it).
    """
    fields = resolve_spec(spec, **overrides)
    return _load_split(fields, fields["split"])[0]


def load_splits(spec: Mapping | None = None, **overrides) -> dict[str, Dataset]:
    """Decode every split in ``spec["splits"]``, from the source that had the first.

    Image-folder splits share the first split's class order, so labels agree.
    """
    fields = resolve_spec(spec, **overrides)
    first, *rest = fields["splits"]
    first_dataset, source = _load_split(fields, first)
    datasets = {first: first_dataset}
    if fields["source"] == "auto":
        fields = {**fields, "source": source}
    for split in rest:
        datasets[split] = _load_split(fields, split, first_dataset.class_names)[0]
    return datasets
