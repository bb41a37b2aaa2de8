"""Every pair of a comparison's entries on its measures, from the summary records alone.

Torch-free, so that a report can compute the comparisons of a folder written before they
were stored (`read_comparisons`). Runs pair by seed (see `optimlab.analysis.stats`); time
to target is in steps, interpolated between evaluations (`optimlab.train.record`), never
on the wall clock: the clock measures the machine's load and the evaluation spacing as
much as the optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from optimlab.analysis.records import DamagedRecords, family, read_json
from optimlab.analysis.stats import ALPHA, PairedMeasure, compare_pair

# What every pair of entries is compared on: (summary record key, lower is better). Time to
# target counts a run that never reached the target at the step budget (analysis.stats).
MEASURES = (("final_test_acc", False), ("final_test_loss", True), ("time_to_target_step", True))
TARGET = "time_to_target_step"


def _measures(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]
              ) -> list[PairedMeasure]:
    """MEASURES that the runs of seeds common to a and b have: time to target only when they
    had a target and a validation split to reach it on; a metric only when some run has a
    value (accuracy: not in regression)."""
    seeds = sorted(a.keys() & b.keys())
    runs = [a[s] for s in seeds] + [b[s] for s in seeds]
    measures = []
    for key, lower in MEASURES:
        if key == TARGET:
            if all(r.get("target_acc") is None and r.get("target_loss") is None or
                   r.get("final_val_loss") is None and not r.get("diverged") for r in runs):
                continue
        elif all(r.get(key) is None for r in runs):
            continue
        cap = max(r["steps_planned"] for r in runs) if key == TARGET else None
        measures.append(PairedMeasure(key, [a[s].get(key) for s in seeds],
                                      [b[s].get(key) for s in seeds], lower, cap))
    return measures


def comparisons(records: Sequence[dict[str, Any]], alpha: float = ALPHA
                ) -> list[dict[str, Any]]:
    """Every pair of entries (a: the one whose runs come first in `records`) on MEASURES,
    paired by seed and Holm-corrected across the pair's measures: one object per (a, b,
    measure), as `analysis.stats.compare_pair` makes them."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for r in records:
        runs.setdefault(family(r), {})[r["seed"]] = r
    return [row for a, b in combinations(runs, 2)
            for row in compare_pair(a, b, _measures(runs[a], runs[b]), alpha)]


# Where an earlier version stored them, beside summary.json.
OLD_FILENAME = "comparisons.json"


def read_comparisons(out_dir: Path, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparisons compare stored in `out_dir`'s `summary` (summary.json as
    `read_summary_file` gives it: its "comparisons"), or in the comparisons.json of an
    earlier version, or, for a folder written before they were stored (or cut short before
    its last run), computed from its runs at the default alpha."""
    stored = summary.get("comparisons")
    path = out_dir / OLD_FILENAME
    if stored is None and path.is_file():
        found = read_json(path)
        if not isinstance(found, dict) or not isinstance(found.get("comparisons"), list):
            raise DamagedRecords(f"{path} is damaged: expected an object with a list "
                                 "\"comparisons\"")
        stored = found["comparisons"]
    if stored is None:
        return comparisons(summary["runs"])
    if not isinstance(stored, list):
        raise DamagedRecords(f"{out_dir / 'summary.json'} is damaged: \"comparisons\" is "
                             f"{type(stored).__name__}, not a list")
    return stored
