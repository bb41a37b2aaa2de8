"""`TrainConfig`: everything that defines one training run, checked on construction."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from optimlab._imports import is_import_path
from optimlab.optim import OPTIMIZERS
from optimlab.train import schedules
from optimlab.train.evaluation import TASKS

# Names a config may use for `dtype`; the JSON records keep the name, not the torch object.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_positive_int(name: str, value: Any, *, optional: bool = False) -> None:
    """A ValueError naming `name` unless `value` is an int >= 1 (or None when optional)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {name}: {value!r}; allowed: an integer >= 1")


def _number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)


def check_targets(target_acc: Any, target_loss: Any) -> None:
    """A ValueError unless each target of "time to target" is None or in its range."""
    if target_acc is not None and not (_number(target_acc) and 0 < target_acc <= 1):
        raise ValueError(f"Invalid target_acc: {target_acc!r}; allowed: None or a number "
                         "in (0, 1]")
    if target_loss is not None and not (_number(target_loss) and target_loss > 0):
        raise ValueError(f"Invalid target_loss: {target_loss!r}; allowed: None or a number > 0")


@dataclass(frozen=True)
class TrainConfig:
    """One run: a model trained on a dataset with one optimizer under one seed.

    The defaults are the MNIST-1D paper's setting (Adam, lr 1e-2, batch 100, 6000 steps).
    """

    dataset: str = "mnist1d"  # a data.load spec; the Dataset object itself is passed separately
    model: str = "cnn"  # a name in optimlab.models.MODELS, or a user's (models.user)
    optimizer: str = "adam"  # a name in optimlab.optim.OPTIMIZERS, or module:Class
    # keyword arguments of the optimizer class; the paper trains with Adam at lr 1e-2
    hyperparameters: dict[str, Any] = field(default_factory=lambda: {"lr": 1e-2})
    steps: int = 6000  # optimizer steps; the paper's budget
    batch_size: int = 100  # the paper's minibatch size
    seed: int = 0  # fixes the initial weights and the minibatch order (see seeding.py)
    eval_every: int = 250  # 24 points on a 6000-step curve; evaluation is excluded from timing
    target_acc: float | None = None  # val accuracy for "time to target"; None: not tracked
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"
    dtype: str = "float32"  # "float32" or "float64" (the sweep's exactness checks use float64)
    schedule: str = "constant"  # η's schedule over the steps (see train/schedules.py)
    label: str = ""  # the run family's name in run names and reports; "" means `optimizer`
    task: str = "classification"  # cross-entropy and accuracy; "regression": mean squared error
    target_loss: float | None = None  # val loss for "time to target" (regression); None: off

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS and not is_import_path(self.optimizer):
            raise ValueError(f"Invalid optimizer: {self.optimizer!r}; allowed: "
                             f"{', '.join(sorted(OPTIMIZERS))} or module:Class")
        if not self.label:
            object.__setattr__(self, "label", self.optimizer)
        if self.task not in TASKS:
            raise ValueError(f"Invalid task: {self.task!r}; allowed: {', '.join(TASKS)}")
        if not isinstance(self.hyperparameters, dict):
            raise TypeError(f"Invalid hyperparameters: {self.hyperparameters!r}; "
                            "expected a dict of optimizer keyword arguments")
        for name in ("steps", "batch_size", "eval_every"):
            check_positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Invalid seed: {self.seed!r}; allowed: an integer >= 0")
        check_targets(self.target_acc, self.target_loss)
        if self.dtype not in DTYPES:
            raise ValueError(f"Invalid dtype: {self.dtype!r}; allowed: {', '.join(DTYPES)}")
        object.__setattr__(self, "schedule", schedules.canonical(self.schedule))
        if not (self.device == "cpu" or self.device.split(":")[0] == "cuda"):
            raise ValueError(f"Invalid device: {self.device!r}; allowed: cpu, cuda, cuda:N")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (the summary record and config.json store this)."""
        return dataclasses.asdict(self)
