"""The user's own arrays: an ``.npz`` with ``x``, ``y`` and optionally ``x_test``, ``y_test``,
or Keras's layout ``x_train``, ``y_train``, ``x_test``, ``y_test`` (what
``keras.datasets.*.load_data()`` returns, saved with ``np.savez``).

``x`` is [N, D] (vectors), [N, H, W] (grayscale images, given one channel) or
[N, C, H, W] (channels first). uint8 ``x`` is treated as pixels (scaled and
standardized per channel); float ``x`` is used as given. Without ``x_test``,
TEST_FRACTION of the examples (chosen with the fixed TEST_SEED, so the test split
does not change with the run's seed) is held out as the test split.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from optimlab.data.checks import check_inputs, check_labels, class_count
from optimlab.data.dataset import Arrays, split_indices

# Held out as test when the file has no x_test: MNIST-1D's own 80/20 split.
TEST_FRACTION = 0.2
# Seed of that hold-out: fixed, so runs with different seeds report on the same test set.
TEST_SEED = 0


def _labels(y: np.ndarray, key: str, path: Path) -> np.ndarray:
    """`y` as int64 class indices >= 0, or a ValueError naming the key, file and first bad row."""
    numeric = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
    if y.ndim != 1 or not numeric:
        raise ValueError(f"{path}: {key!r} must be a 1-D integer array, got {y.dtype} {y.shape}")
    if np.issubdtype(y.dtype, np.floating):  # labels saved as floats: whole numbers only
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise ValueError(f"Invalid {key!r} of {path}: row {bad[0]} is {y[bad[0]]}; "
                             "allowed: class indices 0, 1, 2, ...")
        y = y.astype(np.int64)
    check_labels(y, f"{key!r} of {path}")
    return y.astype(np.int64, copy=False)


def _features(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """`x` as [N, D], [N, 1, H, W] or [N, C, H, W], or a ValueError naming the key and file."""
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{path}: {key!r} must be numeric, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"{path}: {key!r} has shape {x.shape}; allowed: [N, D], [N, H, W] "
                         f"or [N, C, H, W]")
    check_inputs(x, f"{key!r} of {path}")
    return x[:, None] if x.ndim == 3 else x


def _read(path: Path) -> dict[str, np.ndarray]:
    """The arrays in `path` (never unpickling), with a clear error for each way it fails."""
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path} (from spec 'npz:{path}')")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a valid .npz file (a zip of .npy arrays, as "
                         "numpy.savez writes); allowed: arrays x, y [, x_test, y_test] or "
                         "x_train, y_train, x_test, y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path} as .npz without pickles: {err}") from err
    keras = "x_train" in arrays or "y_train" in arrays
    if keras and ("x" in arrays or "y" in arrays):
        raise ValueError(f"{path} has arrays {sorted(arrays)}: both 'x'/'y' and Keras's "
                         "'x_train'/'y_train'; allowed: one layout")
    if keras:  # Keras's names for the same arrays
        arrays["x"], arrays["y"] = arrays.pop("x_train", None), arrays.pop("y_train", None)
    missing = [k for k in ("x", "y") if arrays.get(k) is None]
    if missing or (("x_test" in arrays) != ("y_test" in arrays)):
        raise ValueError(f"{path} has arrays {sorted(k for k in arrays if arrays[k] is not None)}"
                         "; required: 'x', 'y' and optionally both 'x_test' and 'y_test', or "
                         "Keras's 'x_train', 'y_train', 'x_test', 'y_test'")
    return arrays


def _pair(arrays: dict[str, np.ndarray], x_key: str, y_key: str,
          path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Checked (features, labels) from `arrays[x_key]`, `arrays[y_key]`."""
    x, y = _features(arrays[x_key], x_key, path), _labels(arrays[y_key], y_key, path)
    if len(x) != len(y):
        raise ValueError(f"{path}: {x_key!r} has {len(x)} rows but {y_key!r} has {len(y)}")
    return x, y


def load_npz(path: Path) -> Arrays:
    """Train and test arrays from the user's file; the classes are those 'y' names (before
    any hold-out, so a rare class that lands in test is still one)."""
    arrays = _read(path)
    x, y = _pair(arrays, "x", "y", path)
    test = _pair(arrays, "x_test", "y_test", path) if "x_test" in arrays else None
    if test is not None and test[0].shape[1:] != x.shape[1:]:
        raise ValueError(f"{path}: example shape of 'x_test' {test[0].shape[1:]} differs from "
                         f"'x' {x.shape[1:]}")
    classes = class_count(y, f"'y' of {path}")
    if test is None:
        keep, held = split_indices(len(y), TEST_FRACTION, TEST_SEED)
        x, y, test = x[keep], y[keep], (x[held], y[held])
    else:
        check_labels(test[1], f"'y_test' of {path}", classes,
                     f", the classes of 'y' (0..{classes - 1})")
    return Arrays(x, y, *test, pixels=x.dtype == np.uint8, num_classes=classes)
