"""Selection on records (torch-free): the best configuration per optimizer, and whether its
values sit on an edge of their grid (where the optimum may lie beyond).

The sweep selects with these functions and the sweep report judges with them, so that the
page and the selection can never disagree.
"""

from __future__ import annotations

import math
from typing import Any

from optimlab.analysis.records import CurvePoint, family


def point_value(hyperparameters: dict[str, Any], key: str) -> float:
    """The value of grid key `key` in an optimizer's keyword arguments (beta1/2: betas)."""
    if key in ("beta1", "beta2"):
        return float(hyperparameters["betas"][key == "beta2"])
    return float(hyperparameters[key])


def edges(grid: dict[str, tuple[float, ...]], hyperparameters: dict[str, Any]) -> dict[str, str]:
    """{key: "low" | "high"} for each swept key (two values or more) whose value in
    `hyperparameters` is the smallest or largest of its grid: the optimum may lie beyond."""
    out = {}
    for key, values in grid.items():
        if len(values) > 1:
            v = point_value(hyperparameters, key)
            side = "low" if v == min(values) else "high" if v == max(values) else None
            if side:
                out[key] = side
    return out


def grid_keys(hyperparameters: dict[str, Any]) -> list[str]:
    """The grid keys of a point's keyword arguments (`betas` as its halves beta1, beta2)."""
    return [k for key in hyperparameters
            for k in (("beta1", "beta2") if key == "betas" else (key,))]


def grid_of(runs: list[dict[str, Any]], name: str) -> dict[str, tuple[float, ...]]:
    """The grid swept for optimizer `name`, from its stored grid runs: {grid key: values}.
    A key the entry pins has one value, as a key of a one-point grid: never an edge."""
    points = [r["config"]["hyperparameters"] for r in runs
              if family(r["config"]) == name and "grid" in r["roles"]]
    grid = {}
    for key in dict.fromkeys(k for hp in points for k in grid_keys(hp)):
        try:
            grid[key] = tuple(sorted({point_value(hp, key) for hp in points}))
        except (KeyError, TypeError, ValueError, IndexError):  # not a number in every point
            continue
    return grid


def final_value(curves: list[CurvePoint], split: str, metric: str) -> float | None:
    """The last evaluation of `split`/`metric` (None when never evaluated or non-finite)."""
    values = [p.value for p in curves if p.split == split and p.metric == metric]
    return values[-1] if values and math.isfinite(values[-1]) else None


def final_val_loss(run: dict[str, Any]) -> float | None:
    """A stored run's last validation loss: its summary's, exact (the curves keep float32);
    from the curves for a record written before summaries had it."""
    summary = run["summary"]
    if "final_val_loss" in summary:
        return summary["final_val_loss"]
    return final_value(run["curves"], "val", "loss")


def best_per_optimizer(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """label -> the stored run (see Store.runs) with the best validation result: the
    highest accuracy, ties to the lower loss (regression: the lowest loss). A run stopped
    early by successive halving ("pruned_at") never wins: its scores are of fewer steps."""
    best: dict[str, tuple[tuple[float, float], dict[str, Any]]] = {}
    for run in runs:
        s = run["summary"]
        acc, loss = s["final_val_acc"], final_val_loss(run)
        regression = s.get("task") == "regression"
        if s["diverged"] or loss is None or (acc is None and not regression) \
                or s.get("pruned_at") is not None:
            continue
        score = (-loss, 0.0) if regression else (acc, -loss)
        if family(s) not in best or score > best[family(s)][0]:
            best[family(s)] = (score, run)
    return {name: run for name, (_, run) in best.items()}
