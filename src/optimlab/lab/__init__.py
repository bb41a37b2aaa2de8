"""Experiments of many runs: `compare` (each optimizer under each seed), later `sweep`."""

from optimlab.lab.compare import DEFAULT_LR, DEFAULT_STEPS, CompareConfig, Comparison, run_compare
from optimlab.lab.environment import environment

__all__ = [
    "DEFAULT_LR", "DEFAULT_STEPS", "CompareConfig", "Comparison", "environment", "run_compare",
]
