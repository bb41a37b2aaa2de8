"""The `Dataset` record and the steps every source shares: validation split, normalization."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from optimlab.data.checks import check_inputs, check_labels, class_count


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test tensors of one classification dataset.

    ``x_*`` are float32, normalized; ``y_*`` int64 class indices. Validation is
    carved from train (seeded) and is what anything that selects may look at;
    test is only reported.
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_val: torch.Tensor = field(repr=False)
    y_val: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    input_shape: tuple[int, ...]  # one example: (40,) mnist1d, (1, 28, 28) mnist, (3, 32, 32) cifar
    num_classes: int

    def summary(self) -> str:
        """One line for logs and reports."""
        return (f"{self.name}: {len(self.y_train)} train / {len(self.y_val)} val / "
                f"{len(self.y_test)} test, input {self.input_shape}, {self.num_classes} classes")


def describe(ds: Any) -> str:
    """`ds.summary()`, or the name of a dataset-like object without one (tests' stand-ins)."""
    return str(ds.summary()) if hasattr(ds, "summary") else str(ds.name)


def check_val_fraction(val_fraction: float) -> float:
    """`val_fraction` as a float in [0, 1), or a ValueError naming it."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise TypeError(f"val_fraction must be a number, got {type(val_fraction).__name__}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"invalid val_fraction={val_fraction!r}; allowed: 0 <= val_fraction < 1")
    return float(val_fraction)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) sorted indices of range(n); round(fraction·n) held out, chosen by `seed`."""
    n_out = int(round(fraction * n))
    if n - n_out < 1:
        raise ValueError(f"fraction={fraction} of {n} examples leaves nothing to train on")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def standardize_pixels(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale uint8 pixels [N, C, ...] to [0, 1], then per channel to the train mean 0 / std 1.

    Pixels take 256 values, so the channel statistics come exactly from a histogram, and
    the map is one float32 multiply-add per pixel: no float64 copy of the images (which
    would be 1.2 GB for CIFAR-10).
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    affine = []
    for c in range(x_train.shape[1]):
        counts = np.bincount(x_train[:, c].ravel(), minlength=256)
        mean = counts @ levels / counts.sum()
        std = max(float(np.sqrt(counts @ (levels - mean) ** 2 / counts.sum())), 1e-12)
        affine.append((np.float32(1.0 / (255.0 * std)), np.float32(-mean / std)))
    out = []
    for a in (x_train, *others):
        result = np.empty(a.shape, dtype=np.float32)
        for c, (scale, shift) in enumerate(affine):
            np.multiply(a[:, c], scale, out=result[:, c])
            result[:, c] += shift
        out.append(result)
    return out


@dataclass(frozen=True)
class Arrays:
    """What a source hands over: raw train and test arrays, before split and normalization."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    pixels: bool  # True: uint8 pixels, standardized per channel; False: used as given
    num_classes: int | None = None  # None: one more than train's largest label


def _checked_classes(name: str, raw: Arrays) -> int:
    """The class count, after checking the inputs and labels of train and test in full."""
    classes = raw.num_classes or class_count(raw.y_train, f"train labels of {name}")
    for split, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        check_inputs(x, f"{split} inputs of {name}")
        check_labels(y, f"{split} labels of {name}", classes)
    return classes


def finish(name: str, raw: Arrays, val_fraction: float, seed: int) -> Dataset:
    """Check, carve validation from train, normalize with train statistics, wrap as tensors."""
    classes = _checked_classes(name, raw)
    keep, val = split_indices(len(raw.y_train), val_fraction, seed)
    parts = [raw.x_train[keep], raw.x_train[val], raw.x_test]
    xs = standardize_pixels(*parts) if raw.pixels else [p.astype(np.float32) for p in parts]
    ys = [raw.y_train[keep], raw.y_train[val], raw.y_test]
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in xs]
    labels = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) for a in ys]
    return Dataset(name, tensors[0], labels[0], tensors[1], labels[1], tensors[2], labels[2],
                   input_shape=tuple(int(d) for d in raw.x_train.shape[1:]), num_classes=classes)
