"""Experiments of many runs: `compare` (each optimizer under each seed) and `sweep`
(hyperparameter grids), on the plumbing they share (`optimlab.lab.experiment`)."""

from optimlab.lab.compare import DEFAULT_LR, CompareConfig, Comparison, run_compare
from optimlab.lab.environment import environment
from optimlab.lab.experiment import DEFAULT_STEPS, DiskFull, Experiment

__all__ = [
    "DEFAULT_LR", "DEFAULT_STEPS", "CompareConfig", "Comparison", "DiskFull", "Experiment",
    "environment", "run_compare",
]
