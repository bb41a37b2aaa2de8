"""The checks every dataset passes once, as it loads: finite inputs, class labels in range.

Every source calls them on its splits as the source gives them, before validation is
carved out, so that a row number in an error is the row in the user's own arrays
(counting from 0). A NaN input makes every optimizer "diverge" and a label beyond the
model's outputs fails mid-run: both are refused here, before anything trains.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _tensor(values: Any) -> torch.Tensor:
    """`values` as a tensor; NumPy's foreign byte orders and wide unsigned types, which torch
    cannot read or compare, as native int64 / native floats first."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "u" and values.itemsize > 1:
            values = values.astype(np.int64)
        elif not values.dtype.isnative:
            values = values.astype(values.dtype.newbyteorder("="))
    return torch.as_tensor(values)


def check_finite(values: Any, what: str) -> None:
    """A ValueError naming the first row of `values` ([N, ...]) that holds NaN or ±Inf."""
    t = _tensor(values)
    if not t.is_floating_point() or bool(torch.isfinite(t).all()):
        return
    rows = t.reshape(len(t), -1)
    bad = ~torch.isfinite(rows)
    row = int(bad.any(1).nonzero()[0, 0])
    value = float(rows[row][bad[row]][0])
    raise ValueError(f"Invalid {what}: row {row} holds {value}; allowed: finite values")


def check_inputs(values: Any, what: str) -> None:
    """`check_finite`, then again as float32, what the lab trains on: wider floats beyond
    3.4e38 become Inf there."""
    check_finite(values, what)
    t = _tensor(values)
    if t.is_floating_point() and t.element_size() > 4:
        check_finite(t.to(torch.float32), f"{what} as float32")


def check_labels(labels: Any, what: str, classes: int | None = None, why: str = "") -> None:
    """A ValueError unless `labels` are class indices [N], each >= 0 and < `classes` when
    given (`why` says where that count comes from); it names the first row that is not."""
    y = _tensor(labels)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"Invalid {what}: dtype {y.dtype}; allowed: integer class indices")
    if y.ndim != 1:
        raise ValueError(f"Invalid {what}: shape {tuple(y.shape)}; allowed: one class index "
                         "per example, shape [N]")
    bad = y < 0 if classes is None else (y < 0) | (y >= classes)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        allowed = ("class indices >= 0" if classes is None
                   else f"0 <= label < {classes}{why}")
        raise ValueError(f"Invalid {what}: row {row} is {int(y[row])}; allowed: {allowed}")


def class_count(labels: Any, what: str) -> int:
    """The number of classes that train's `labels` name: the largest + 1, at least two."""
    check_labels(labels, what)
    if len(labels) == 0:
        raise ValueError(f"Invalid {what}: no examples; allowed: at least one")
    classes = int(_tensor(labels).max()) + 1
    if classes < 2:
        raise ValueError(f"Invalid {what}: every label is 0; allowed: at least two classes")
    return classes



def check_dataset(ds: Any) -> None:
    """Every split of a `Dataset` record made by hand (Python hands one over as it is),
    against its own `num_classes`; rows are rows of each split."""
    for split in ("train", "val", "test"):
        check_inputs(getattr(ds, f"x_{split}"), f"{split} inputs of {ds.name}")
        y = getattr(ds, f"y_{split}")
        if y.is_floating_point():
            check_finite(y, f"{split} targets of {ds.name}")
        else:
            check_labels(y, f"{split} labels of {ds.name}", ds.num_classes)
