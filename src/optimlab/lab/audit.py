"""The tuning table behind the fairness audit (`optimlab.analysis.audit`), per entry:
what it tuned and held fixed, with what budget, counted from the stored runs.

The table is what config.json's "tuning" holds for compare, and what a sweep with
`select="val"` audits: label -> {"lr": η used, "source": "tuned" | "given" | "default",
"hyperparameters": the keyword arguments chosen (None: nothing chosen), "tuned": the keys
searched (two values or more), "untuned": the keys of its declared search space held
fixed, "trials", "steps_per_trial", "budget" (trials × steps, 0 untuned), "edge": {key:
"low" | "high"}, "space": {key: [lowest, highest] value tried}, "values": {key: the value
chosen}, "all_diverged"}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optimlab.analysis.records import family
from optimlab.analysis.selection import grid_of, point_value
from optimlab.lab.entries import Entry
from optimlab.lab.grid import FALLBACK_SPACE
from optimlab.optim import SPECS


def declared_keys(entry: Entry) -> tuple[str, ...]:
    """The keys of the entry's declared search space (a module:Class: η only)."""
    spec = SPECS.get(entry.name)
    return tuple(spec.search if spec is not None and spec.search else FALLBACK_SPACE)


def decays(entries: Sequence[Entry]) -> dict[str, str]:
    """label -> how the optimizer's own update decays its step, for those whose does."""
    return {e.label: SPECS[e.name].decays_lr for e in entries
            if e.name in SPECS and SPECS[e.name].decays_lr}


def untuned(entry: Entry, lr: float, source: str) -> dict[str, Any]:
    """The row of an entry that was not tuned: η `lr` from `source`, a budget of 0."""
    return {"lr": lr, "source": source, "hyperparameters": None, "tuned": [],
            "untuned": list(declared_keys(entry)), "trials": 0, "steps_per_trial": None,
            "budget": 0, "edge": {}, "space": {}, "values": {}, "all_diverged": False}


def tuned_row(entry: Entry, runs: list[dict[str, Any]], chosen: dict[str, Any],
              lr_source: str) -> dict[str, Any]:
    """The row of an entry tuned by the grid runs `runs` (the stored ones of this entry;
    see `Store.runs`) whose selection is `chosen` (see `optimlab.lab.sweep.select`);
    `lr_source`: where η came from when it was not among the keys searched."""
    found = grid_of(runs, entry.label)  # η first, then by name: how lines and tables list them
    grid = {k: found[k] for k in sorted(found, key=lambda k: (k != "lr", k))
            if len(found[k]) > 1}
    steps = [r["config"]["steps"] for r in runs]
    hp = chosen["hyperparameters"]
    return {"lr": float(hp["lr"]) if hp else None,
            "source": "tuned" if hp and "lr" in grid else lr_source if hp else "default",
            "hyperparameters": hp, "tuned": sorted(grid),
            "untuned": [k for k in declared_keys(entry) if k not in grid],
            "trials": len(runs), "steps_per_trial": max(steps, default=None),
            "budget": sum(steps), "edge": dict(chosen["edge"]),
            "space": {k: [min(v), max(v)] for k, v in grid.items()},
            "values": {k: point_value(hp, k) for k in grid} if hp else {},
            "all_diverged": chosen["all_diverged"]}


def grid_runs(runs: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """The stored tuning trials (role "grid") of entry `label`."""
    return [r for r in runs if "grid" in r["roles"] and family(r["config"]) == label]
