"""Datasets for the lab: MNIST-1D (the offline default), MNIST, Fashion-MNIST,
CIFAR-10, the real MNIST test set (``mnist-t10k``), scikit-learn's ``digits`` (offline,
extra ``examples``), ``lookup`` (a generated sequence task, `optimlab.data.lookup`),
the user's ``npz:PATH`` and the user's ``module:callable`` (see `optimlab.data.user`).

``load(spec)`` returns a `Dataset` with float32 normalized inputs, int64 labels,
and a seeded validation split carved from train. Errors: ``ValueError`` /
``TypeError`` for bad arguments and corrupt or mismatching files (a checksum
mismatch is a `ChecksumError`, a ValueError); ``OSError`` for files that are
missing (``FileNotFoundError``) or cannot be downloaded (`DownloadError`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from optimlab._imports import is_import_path
from optimlab.data.dataset import Arrays, Dataset, check_val_fraction, finish
from optimlab.data.digits import load_digits
from optimlab.data.download import ChecksumError, DownloadError, fetch
from optimlab.data.files import DATA_DIR_ENV, MIRRORS, Mirror, default_cache_dir
from optimlab.data.images import load_cifar10, load_idx_dataset, load_mnist_t10k
from optimlab.data.lookup import load_lookup
from optimlab.data.mnist1d import load_mnist1d
from optimlab.data.npz import load_npz
from optimlab.data.user import for_task, from_objects, load_user

Source = Callable[[str | Path | None, bool, Path], Arrays]

_SOURCES: dict[str, Source] = {
    "mnist1d": lambda data_dir, download, cache: load_mnist1d(cache),
    "mnist": lambda data_dir, download, cache: load_idx_dataset("mnist", data_dir, download, cache),
    "fashion-mnist": lambda data_dir, download, cache: load_idx_dataset(
        "fashion-mnist", data_dir, download, cache),
    "cifar10": load_cifar10,
    "mnist-t10k": load_mnist_t10k,
    "digits": lambda data_dir, download, cache: load_digits(),
    "lookup": lambda data_dir, download, cache: load_lookup(),
}
# Names `load` accepts, besides "npz:PATH"; the first is the default.
DATASETS: tuple[str, ...] = tuple(_SOURCES)
# Every built-in dataset has ten classes.
NUM_CLASSES = 10


def load(spec: str, *, data_dir: str | Path | None = None, download: bool = False,
         val_fraction: float = 0.1, seed: int = 0,
         cache_dir: str | Path | None = None) -> Dataset:
    """The dataset named by `spec` (one of `DATASETS`, ``"npz:PATH"`` or
    ``"module:callable"`` returning ``(train, test)``).

    Args:
        data_dir: folder holding the dataset's files (also searched as ``data_dir/<spec>``);
            default ``$OPTIMLAB_DATA_DIR`` when set.
        download: fetch missing files from `MIRRORS`, checksum-verified, written atomically.
        val_fraction: share of train held out as validation, in [0, 1).
        seed: chooses the validation examples.
        cache_dir: where generated data and downloads live; default `default_cache_dir()`.
    """
    if not isinstance(spec, str):
        raise TypeError(f"dataset spec must be a str, got {type(spec).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    val_fraction = check_val_fraction(val_fraction)
    if spec.startswith("npz:"):
        if not spec[4:]:
            raise ValueError("dataset spec 'npz:' needs a path, e.g. npz:data/mine.npz")
        return finish(spec, load_npz(Path(spec[4:]).expanduser()), val_fraction, seed)
    if spec not in _SOURCES and is_import_path(spec):
        return load_user(spec, val_fraction=val_fraction, seed=seed)
    if spec not in _SOURCES:
        raise ValueError(f"Invalid dataset {spec!r}: no such dataset; allowed: "
                         f"{', '.join(DATASETS)}, npz:PATH or module:callable")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    raw = _SOURCES[spec](data_dir, bool(download), cache)
    return finish(spec, dataclasses.replace(raw, num_classes=NUM_CLASSES), val_fraction, seed)


__all__ = [
    "DATA_DIR_ENV", "DATASETS", "MIRRORS", "ChecksumError", "Dataset", "DownloadError", "Mirror",
    "default_cache_dir", "fetch", "for_task", "from_objects", "load",
]
