"""A user's own data: `module:callable` returning `(train, test)`, or the objects themselves.

Each of train and test is a `torch.utils.data.Dataset` of `(x, y)` pairs, a `DataLoader`
over one, or a pair of tensors/arrays `(x, y)`. Inputs are used as given (float32), and
must be finite; integer targets are class indices (classification: train's labels name
the classes, 0 to the largest, and test's must lie among them), float targets are
regression targets. Validation is carved from train exactly as for the built-in datasets
(`split_indices`: the same share, the same seed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from optimlab._imports import import_object
from optimlab.data.checks import check_finite, check_inputs, check_labels, class_count
from optimlab.data.dataset import Dataset, split_indices

PAIR_HELP = ("allowed: a torch Dataset of (x, y) pairs, a DataLoader, or a pair of tensors "
             "(x, y)")


def _tensor(a: Any, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"Invalid {what}: {type(a).__name__} is not numeric ({e})") from None


def _stack(items: list[Any], what: str) -> torch.Tensor:
    try:
        return torch.stack([_tensor(a, what) for a in items])
    except RuntimeError as e:
        raise ValueError(f"Invalid {what}: examples of different shapes ({e})") from None


def as_tensors(obj: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [N, ...], y [N, ...]) from a Dataset, a DataLoader or a pair of tensors/arrays."""
    from torch.utils.data import DataLoader, TensorDataset

    if isinstance(obj, (tuple, list)) and len(obj) == 2 and \
            isinstance(obj[0], (torch.Tensor, np.ndarray)):
        x, y = _tensor(obj[0], f"{what} x"), _tensor(obj[1], f"{what} y")
    elif isinstance(obj, TensorDataset) and len(obj.tensors) == 2:
        x, y = obj.tensors
    elif isinstance(obj, DataLoader):
        batches = list(obj)
        if not batches or any(not isinstance(b, (tuple, list)) or len(b) != 2 for b in batches):
            raise ValueError(f"Invalid {what}: a DataLoader must yield (x, y) batches")
        x = torch.cat([_tensor(b[0], f"{what} x") for b in batches])
        y = torch.cat([_tensor(b[1], f"{what} y") for b in batches])
    elif hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        items = [obj[i] for i in range(len(obj))]
        if not items or any(not isinstance(it, (tuple, list)) or len(it) != 2 for it in items):
            raise ValueError(f"Invalid {what}: a Dataset must hold (x, y) pairs; {PAIR_HELP}")
        x = _stack([it[0] for it in items], f"{what} x")
        y = _stack([it[1] for it in items], f"{what} y")
    else:
        raise ValueError(f"Invalid {what}: {type(obj).__name__}; {PAIR_HELP}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"Invalid {what}: {len(x)} inputs but {len(y)} targets; allowed: "
                         "the same number, at least one")
    return x, y


def _targets(y: torch.Tensor) -> torch.Tensor:
    if y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"Invalid targets of dtype {y.dtype}; allowed: integer class "
                         "indices or float regression targets")
    return y.to(torch.int64) if not y.is_floating_point() else y.to(torch.float32)


def _outputs_needed(name: str, y: torch.Tensor, y_test: torch.Tensor) -> int:
    """The classes train's labels name (test's checked against them), or, for regression
    targets, the values per example; after checking every target."""
    if y.is_floating_point() != y_test.is_floating_point():
        raise ValueError(f"Invalid data {name}: train targets are {y.dtype} but test targets "
                         f"{y_test.dtype}; allowed: integer class indices in both, or float "
                         "targets in both")
    if y.is_floating_point():
        check_finite(y, f"train targets of {name}")
        check_finite(y_test, f"test targets of {name}")
        return int(y[0].numel())
    classes = class_count(y, f"train labels of {name}")
    check_labels(y_test, f"test labels of {name}", classes,
                 f", the classes of train's labels (0..{classes - 1})")
    return classes


def from_objects(name: str, train: Any, test: Any, *, val_fraction: float = 0.1,
                 seed: int = 0) -> Dataset:
    """A `Dataset` from the user's train and test objects (see the module docstring)."""
    x, y = as_tensors(train, "train data")
    x_test, y_test = as_tensors(test, "test data")
    if x.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"Invalid data: train examples have shape {tuple(x.shape[1:])} but "
                         f"test examples {tuple(x_test.shape[1:])}")
    check_inputs(x, f"train inputs of {name}")
    check_inputs(x_test, f"test inputs of {name}")
    y, y_test = _targets(y), _targets(y_test)
    classes = _outputs_needed(name, y, y_test)
    keep, val = (torch.from_numpy(a) for a in split_indices(len(y), val_fraction, seed))
    x, x_test = x.to(torch.float32), x_test.to(torch.float32)
    return Dataset(name, x[keep], y[keep], x[val], y[val], x_test, y_test,
                   input_shape=tuple(int(d) for d in x.shape[1:]), num_classes=classes)


def load_user(spec: str, *, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """The data `module:callable` returns, called with no arguments."""
    try:
        fn = import_object(spec)
    except ValueError as e:
        raise ValueError(f"Invalid dataset {spec!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"Invalid dataset {spec!r}: a {type(fn).__name__}, not a callable "
                         "returning (train, test)")
    out = fn()
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ValueError(f"Invalid dataset {spec!r}: it returned {type(out).__name__}; "
                         "allowed: (train, test)")
    return from_objects(spec, out[0], out[1], val_fraction=val_fraction, seed=seed)


def for_task(ds: Any, task: str) -> Any:
    """`ds`, checked against the task: classification takes integer class labels, regression
    float targets. The other kind is refused, not converted: regressing on class indices,
    or classifying floats, trains and scores without an error and means nothing."""
    y = ds.y_train
    if task == "classification" and y.is_floating_point():
        whole = bool((y == y.round()).all())
        hint = " (whole numbers: return them as integers to classify)" if whole else ""
        raise ValueError(f"Invalid task 'classification' for {ds.name}: its targets are "
                         f"{y.dtype}{hint}; allowed: integer class indices, or --task "
                         "regression")
    if task == "regression" and not y.is_floating_point():
        raise ValueError(f"Invalid task 'regression' for {ds.name}: its targets are {y.dtype} "
                         "class labels; allowed: --task classification, or float targets to "
                         "regress on")
    return ds
