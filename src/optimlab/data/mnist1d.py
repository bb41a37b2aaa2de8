"""MNIST-1D, generated offline by the ``mnist1d`` package and cached as ``.npz``.

``mnist1d.data.make_dataset(get_dataset_args())`` with the package defaults:
5000 signals of length 40, 10 classes, 80/20 split → 4000 train / 1000 test,
already centered to mean 0 and std 1 by the generator. The generator seeds
NumPy's and Python's global RNGs (seed 42); we restore both afterwards so that
loading data never changes anyone else's random stream. It never downloads.
"""

from __future__ import annotations

import os
import random
import tempfile
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


def load_mnist1d(cache_dir: Path) -> Arrays:
    """The cached arrays, generating and caching them on first use."""
    path = cache_dir / CACHE_NAME
    if not path.exists():
        save_npz(path, generate())
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in KEYS}
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"corrupt MNIST-1D cache {path}: {err}; delete it to regenerate") from err
    return Arrays(arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"], pixels=False)
