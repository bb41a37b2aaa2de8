"""2-D test functions and optimizer trajectories: the lecture's claims as pictures and numbers."""

from optimlab.landscape.functions import FUNCTIONS, TestFunction
from optimlab.landscape.run import LR_GRID, LandscapeConfig, run_landscape, run_paths

__all__ = ["FUNCTIONS", "TestFunction", "LR_GRID", "LandscapeConfig", "run_landscape",
           "run_paths"]
