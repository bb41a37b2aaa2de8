"""MNIST-1D, generated offline by the ``mnist1d`` package and cached as ``.npz``.

``mnist1d.data.make_dataset(get_dataset_args())`` with the package defaults:
5000 signals of length 40, 10 classes, 80/20 split → 4000 train / 1000 test,
already centered to mean 0 and std 1 by the generator. The generator seeds
NumPy's and Python's global RNGs (seed 42); we restore both afterwards so that
loading data never changes anyone else's random stream. It never downloads.

Generating takes seconds, reading the cache a small part of that (docs/data.md). The
cache holds numeric arrays only (npz, read with ``allow_pickle=False``) and is replaced
atomically; a cache file that cannot be read as MNIST-1D's (truncated, another format,
other shapes) is regenerated, never trusted, and an unwritable cache folder only costs the
generation.
"""

from __future__ import annotations

import os
import random
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from optimlab.data.dataset import Arrays

# File name inside the cache dir; bump the suffix if the generation recipe changes.
CACHE_NAME = "mnist1d-default-v1.npz"
KEYS = ("x", "y", "x_test", "y_test")


def generate() -> dict[str, np.ndarray]:
    """The default MNIST-1D arrays, fresh from the generator (a few seconds)."""
    from mnist1d.data import get_dataset_args, make_dataset  # slow import: only when generating

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {key: np.asarray(data[key]) for key in KEYS}


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to `path` atomically (a temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            # Numeric arrays only: nothing here ever needs (or gets) a pickle.
            np.savez(f, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"],
                     y_test=arrays["y_test"])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when `path` is missing or not MNIST-1D's arrays: signals
    [N, L] and [M, L] of floats, one integer label per signal."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    x, y, x_test, y_test = (arrays[key] for key in KEYS)
    shapes_ok = (x.ndim == x_test.ndim == 2 and x.shape[1] == x_test.shape[1] > 0
                 and y.shape == (len(x),) and y_test.shape == (len(x_test),) and len(x) > 0)
    kinds_ok = all(a.dtype.kind == "f" for a in (x, x_test)) and all(
        a.dtype.kind in "iu" for a in (y, y_test))
    return arrays if shapes_ok and kinds_ok else None


def load_mnist1d(cache_dir: Path) -> Arrays:
    """The cached arrays, generated (and cached, when the folder is writable) on first use
    or when the cache file is damaged."""
    path = cache_dir / CACHE_NAME
    arrays = read_cache(path)
    if arrays is None:
        arrays = generate()
        try:
            save_npz(path, arrays)
        except OSError:
            pass  # a read-only cache: the next load generates again, nothing is lost
    return Arrays(arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"], pixels=False)
