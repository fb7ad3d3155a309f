"""Optional ``.npz`` cache of decoded splits, so a second load skips decoding.

The file name holds a digest of the request (source, name, path, data_dir, split), so
different requests never share a file. The cache is not invalidated when the underlying
files change: delete the ``.npz`` (or the cache dir) after changing the data.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile

import numpy as np

from bayesnas_jax.data.dataset import Dataset


def cache_file(cache_dir: str, request: dict) -> str:
    """Path of the cache entry for ``request`` (a JSON-serialisable dict)."""
    digest = hashlib.sha1(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]
    label = "-".join(str(request.get(k) or "") for k in ("name", "split"))
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_-") or "data"
    return os.path.join(cache_dir, f"{label}-{digest}.npz")


def load_cached(path: str) -> Dataset | None:
    """The cached dataset at ``path``, or None when there is none."""
    if not os.path.isfile(path):
        return None
    with np.load(path, allow_pickle=False) as entry:
        return Dataset(entry["images"], entry["labels"],
                       tuple(str(c) for c in entry["class_names"]),
                       f"{entry['source']} [cached {path}]")


def save_cached(path: str, dataset: Dataset) -> None:
    """Write ``dataset`` to ``path`` atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(suffix=".npz", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, images=dataset.images, labels=dataset.labels,
                     class_names=np.asarray(dataset.class_names, dtype=str),
                     source=np.asarray(dataset.source))
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
