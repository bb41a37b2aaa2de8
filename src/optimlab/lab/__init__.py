"""Experiments of many runs: `compare` (each optimizer under each seed) and `sweep`
(hyperparameter grids), on the plumbing they share (`optimlab.lab.experiment`).

The names below are imported on first use: a torch-free module of the lab (the Ray
executor's actors, `optimlab.lab.ray_actors`) must not import torch through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optimlab.lab.compare import DEFAULT_LR, CompareConfig, Comparison, run_compare
    from optimlab.lab.experiment import DEFAULT_STEPS, DiskFull, Experiment

# name -> the module that defines it
_WHERE = {"DEFAULT_LR": "compare", "CompareConfig": "compare", "Comparison": "compare",
          "run_compare": "compare", "DEFAULT_STEPS": "experiment", "DiskFull": "experiment",
          "Experiment": "experiment"}

__all__ = [
    "DEFAULT_LR", "DEFAULT_STEPS", "CompareConfig", "Comparison", "DiskFull", "Experiment",
    "run_compare",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"optimlab.lab.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'optimlab.lab' has no attribute {name!r}")
