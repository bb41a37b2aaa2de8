"""Budget curves (torch-free): each optimizer's expected best validation score over k random
trials, k = 1..N, from the stored runs of a sweep (Dodge et al. 2019; Sivaprasad et al. 2020).

A trial is one configuration (an optimizer entry and its hyperparameters): the runs planned
as search points, not the re-runs of a chosen point ("tuned") or of the class defaults
("one-shot"). Its score is the final validation accuracy averaged over its seeds
(regression: the final validation loss, lower is better). A run that diverged, or whose
measure is missing or non-finite, scores the worst: accuracy 0 (the lowest there is: the
model it left is not one a user would keep), and for a loss, which has no finite worst,
the largest finite validation loss of any run in the sweep. The curve is
`optimlab.analysis.stats.expected_best`, the band `expected_best_band`.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from optimlab.analysis.records import family
from optimlab.analysis.stats import expected_best, expected_best_band

RERUNS = {"tuned", "one-shot"}  # roles of runs that repeat a point, not search it


def _is_trial(run: dict[str, Any]) -> bool:
    return bool(set(run["roles"]) - RERUNS)


def measure_of(runs: list[dict[str, Any]]) -> tuple[str, bool] | None:
    """(summary key, higher is better) of the sweep's validation measure; None when no run
    recorded one (no validation split)."""
    regression = any(r["summary"].get("task") == "regression" for r in runs)
    key = "final_val_loss" if regression else "final_val_acc"
    if not any(r["summary"].get(key) is not None for r in runs):
        return None
    return key, not regression


def _worst(runs: list[dict[str, Any]], key: str, higher_is_better: bool) -> float:
    if higher_is_better:
        return 0.0
    finite = [r["summary"][key] for r in runs if r["summary"].get(key) is not None
              and math.isfinite(r["summary"][key])]
    return max(finite, default=math.nan)


def trial_scores(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Entry label -> the score of each of its trials, in planning order (see the module's
    docstring); {} when the sweep has no validation measure."""
    found = measure_of(runs)
    if found is None:
        return {}
    key, higher = found
    worst = _worst(runs, key, higher)
    seeds: dict[tuple[str, str], list[float]] = {}
    for run in filter(_is_trial, runs):
        s = run["summary"]
        value = s.get(key)
        ok = not s["diverged"] and value is not None and math.isfinite(value)
        point = (family(run["config"]), json.dumps(run["config"]["hyperparameters"],
                                                   sort_keys=True))
        seeds.setdefault(point, []).append(value if ok else worst)
    out: dict[str, list[float]] = {}
    for (name, _), values in seeds.items():
        out.setdefault(name, []).append(statistics.fmean(values))
    return out


def budget_curves(runs: list[dict[str, Any]], level: float = 0.95) -> dict[str, Any] | None:
    """The budget curves: {"expected_best": {entry: [k = 1..N]}, "band": {entry:
    {"low": [...], "high": [...]}} (a seeded percentile bootstrap at `level`), "trials":
    {entry: N}, "diverged": {entry: runs scored the worst}, "measure", "higher_is_better",
    "level"}; None when the sweep has no validation measure."""
    found = measure_of(runs)
    scores = trial_scores(runs)
    if found is None or not scores:
        return None
    key, higher = found
    curves, band = {}, {}
    for name, values in scores.items():
        if not all(map(math.isfinite, values)):  # a loss sweep where every run diverged
            continue
        curves[name] = expected_best(values, higher_is_better=higher).tolist()
        low, high = expected_best_band(values, higher_is_better=higher, level=level)
        band[name] = {"low": low.tolist(), "high": high.tolist()}
    diverged = {name: sum(r["summary"]["diverged"] for r in runs if _is_trial(r)
                          and family(r["config"]) == name) for name in scores}
    return {"expected_best": curves, "band": band,
            "trials": {name: len(v) for name, v in scores.items()}, "diverged": diverged,
            "measure": key, "higher_is_better": higher, "level": level}


def summary_sections(curves: dict[str, Any] | None) -> dict[str, Any]:
    """`budget_curves`' result as summary.json's sections: "expected_best": {entry: [k = 1..N]}
    and "budget": the rest (band, trials, diverged, measure, higher_is_better, level); none
    without a validation measure."""
    if curves is None:
        return {}
    return {"expected_best": curves["expected_best"],
            "budget": {k: v for k, v in curves.items() if k != "expected_best"}}


def from_summary(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The budget curves stored in a summary.json object (see `summary_sections`), None where
    it has none."""
    if "expected_best" not in summary:
        return None
    return {"expected_best": summary["expected_best"], **summary["budget"]}


def best_at(curves: dict[str, list[float]], k: int, higher_is_better: bool = True
            ) -> list[str]:
    """The entries whose expected best over k trials is the best (ties: all of them); only
    entries with at least k trials take part."""
    at = {name: c[k - 1] for name, c in curves.items() if len(c) >= k}
    if not at:
        return []
    top = max(at.values()) if higher_is_better else min(at.values())
    return [name for name, v in at.items() if v == top]
