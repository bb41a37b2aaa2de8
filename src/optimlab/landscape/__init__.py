"""2-D test functions and optimizer trajectories: the lecture's claims as pictures and numbers.

Names are imported on first use: the test functions need no torch (a report draws their
contours without it), the runs do.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"FUNCTIONS": "functions", "TestFunction": "functions", "LR_GRID": "run",
          "LandscapeConfig": "run", "run_landscape": "run", "run_paths": "run"}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
