"""The 2-D test functions: each with its minimum, a standard start and plot bounds.

Every function maps a float64 tensor ``w`` of shape (..., 2) to its values of
shape (...), so one call evaluates many points (the runs of an η grid), and is
differentiated by autograd: the optimizers see what a network parameter would. The same
functions take a NumPy array, so that a report draws the contours without torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import torch

Point = tuple[float, float]
Array: TypeAlias = "torch.Tensor | np.ndarray"


@dataclass(frozen=True)
class TestFunction:
    """One landscape. ``minimum`` is None for the saddle, whose target is escape instead."""

    name: str
    formula: str  # shown in plot titles and paths.json
    f: Callable[[Array], Array]
    minimum: Point | None
    start: Point
    bounds: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax of the plot
    tol: float  # the target: distance to the minimum <= tol (no minimum: f <= −tol, escaped)
    log_contours: bool = False  # steep functions read better on log-spaced contour levels
    domain: float = 10.0  # a run leaving the plot box grown this many times has diverged
    valley: Point | None = None  # a ravine's floor direction: where an overshoot is measured

    __test__ = False  # not a pytest test class, despite the name

    def value(self, x: float, y: float) -> float:
        import torch  # as the paths are computed: the same arithmetic as theirs

        return float(self.f(torch.tensor([x, y], dtype=torch.float64)))

    def in_domain(self, x: float, y: float) -> bool:
        xmin, xmax, ymin, ymax = self.bounds
        cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
        hx, hy = self.domain * (xmax - xmin) / 2, self.domain * (ymax - ymin) / 2
        return abs(x - cx) <= hx and abs(y - cy) <= hy

    def on_target(self, x: float, y: float) -> bool:
        if self.minimum is None:
            return self.value(x, y) <= -self.tol
        return math.hypot(x - self.minimum[0], y - self.minimum[1]) <= self.tol

    @property
    def f_min(self) -> float | None:
        return None if self.minimum is None else self.value(*self.minimum)


def _ravine(w: Array) -> Array:
    # curvatures 0.2 (along the valley floor) and 10 (across it): condition number 50
    return 0.5 * (0.2 * w[..., 0] ** 2 + 10.0 * w[..., 1] ** 2)


def _rosenbrock(w: Array) -> Array:
    x, y = w[..., 0], w[..., 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _beale(w: Array) -> Array:
    x, y = w[..., 0], w[..., 1]
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2
            + (2.625 - x + x * y**3) ** 2)


def _saddle(w: Array) -> Array:
    return w[..., 0] ** 2 - w[..., 1] ** 2


def _cos(w: Array) -> Array:
    """cos of a tensor (autograd follows it) or of an array (the report's contours)."""
    return np.cos(w) if isinstance(w, np.ndarray) else w.cos()


def _bumpy(w: Array) -> Array:
    # a wide bowl plus shallow ripples: the ripples make local minima only where
    # the bowl is flatter than they are steep, i.e. on the way in, not far out
    ripple = (1 - _cos(BUMP_FREQ * w)).sum(-1)
    return 0.5 * (w**2).sum(-1) + BUMP_HEIGHT * ripple


def _rastrigin(w: Array) -> Array:
    return 20 + (w**2 - 10 * _cos(2 * math.pi * w)).sum(-1)


# ripples 2·0.4 high, 2π/6 ≈ 1 apart: local minima on the way in from the standard start
BUMP_HEIGHT, BUMP_FREQ = 0.4, 6.0

FUNCTIONS: dict[str, TestFunction] = {fn.name: fn for fn in (
    TestFunction("ravine", "½(0.2x² + 10y²)", _ravine, (0.0, 0.0), (-10.0, 1.0),
                 (-11.0, 11.0, -2.5, 2.5), tol=1e-2, valley=(1.0, 0.0)),
    TestFunction("rosenbrock", "(1−x)² + 100(y−x²)²", _rosenbrock, (1.0, 1.0), (-1.2, 1.0),
                 (-2.0, 2.0, -1.0, 3.0), tol=1e-2, log_contours=True),
    TestFunction("beale", "Beale", _beale, (3.0, 0.5), (1.0, 1.5),
                 (-4.5, 4.5, -4.5, 4.5), tol=1e-2, log_contours=True),
    TestFunction("saddle", "x² − y²", _saddle, None, (1.0, 1e-3),
                 (-1.5, 1.5, -1.5, 1.5), tol=1.0, domain=1.0),
    TestFunction("bumpy", "½(x²+y²) + bumps", _bumpy, (0.0, 0.0), (4.0, 3.0),
                 (-5.0, 5.0, -5.0, 5.0), tol=1e-2),
    TestFunction("rastrigin", "Rastrigin", _rastrigin, (0.0, 0.0), (4.5, 4.0),
                 (-5.12, 5.12, -5.12, 5.12), tol=1e-2),
)}


def surface(name: str, bounds: Sequence[float], log: bool, points: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test function `name` on a `points` × `points` grid over `bounds` (xmin, xmax, ymin,
    ymax), for contours: (xs, ys, z); with `log`, z is log10(z − min + 1e-3)."""
    xmin, xmax, ymin, ymax = bounds
    xs, ys = np.linspace(xmin, xmax, points), np.linspace(ymin, ymax, points)
    z = np.asarray(FUNCTIONS[name].f(np.stack(np.meshgrid(xs, ys), -1)), float)
    return xs, ys, np.log10(z - z.min() + 1e-3) if log else z
