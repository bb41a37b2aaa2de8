"""Rankings over training: the optimizers' order at each evaluation, and where it flips.

A workload's single ranking (steps to target, `analysis.profiles`) says who got there
first; it does not say whether the order held. At each evaluation step the optimizers are
ranked by the median over seeds of their validation accuracy at that step (a step-based
measure: the machine's load cannot move it). A seed with no finite value there (diverged,
or stopped before that step) counts as worse than any that has one, as a missed target
does in `profiles.median_steps`: the median is None when it falls on such a seed, and
None ranks last.

Ties share a rank, as in sports ("1, 2, 2, 4"): an optimizer's rank is 1 + the number of
optimizers strictly ahead of it. Medians within `TIE` of each other are equal (the medians
of the same accuracies, added in another order, differ in their last bits). Before the
first step every optimizer holds the same initial weights (the seeds are paired), so the
first evaluation ties them all.

A flip is a pair ordered one way at the last evaluation and the other way at an earlier
one (each strictly: a tie is no order). A pair tied at the end never flips.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from optimlab.analysis import profiles
from optimlab.analysis.records import Curves, family

MEASURE = ("median over seeds of the validation accuracy at each evaluation step (a seed "
           "without a finite value there counts as the worst)")
TIE = 1e-9  # relative: accuracies k/n of a validation split are far coarser
# optimizer -> per seed: evaluation step -> value (None or NaN: no finite value)
Series = Mapping[str, Sequence[Mapping[float, float | None]]]


def median_at(seeds: Sequence[Mapping[float, float | None]], step: float) -> float | None:
    """The median over seeds of the value at `step`, higher being better; a seed without a
    finite value there counts as the worst; None when the median falls on such a seed."""
    values = [seed.get(step) for seed in seeds]
    # profiles.median_steps orders a missing value last among lower-is-better numbers: the
    # negated accuracies are such numbers
    m = profiles.median_steps([-v if v is not None and math.isfinite(v) else None
                               for v in values])
    return None if m is None else 0.0 - m  # 0.0 - m: never -0.0


def _ahead(x: float | None, y: float | None) -> bool:
    """x strictly ahead of y (higher, beyond a tie; any number ahead of None)."""
    if x is None:
        return False
    return y is None or (x > y and not math.isclose(x, y, rel_tol=TIE, abs_tol=TIE))


def rank(values: Mapping[str, float | None]) -> dict[str, int]:
    """Each optimizer's rank: 1 + the number strictly ahead of it (ties share a rank)."""
    return {o: 1 + sum(_ahead(other, v) for other in values.values())
            for o, v in values.items()}


def ranking_over_training(series: Series) -> list[dict[str, Any]]:
    """One checkpoint per evaluation step that any seed holds, in step order: {"step",
    "order" (best first; tied ones in the order of `series`), "rank", "value" (the
    medians)}."""
    steps = sorted({s for seeds in series.values() for seed in seeds for s in seed})
    out = []
    for step in steps:
        values = {o: median_at(seeds, step) for o, seeds in series.items()}
        ranks = rank(values)
        out.append({"step": step, "order": sorted(ranks, key=ranks.__getitem__),
                    "rank": ranks, "value": values})
    return out


def flips(checkpoints: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every pair that the last checkpoint orders against an earlier one: {"ahead" (at the
    end), "behind", "steps" (where "behind" was strictly ahead)}, in the final order."""
    if not checkpoints:
        return []
    final = checkpoints[-1]["rank"]
    out = []
    for a in checkpoints[-1]["order"]:
        for b in checkpoints[-1]["order"]:
            if final[a] < final[b]:
                steps = [c["step"] for c in checkpoints[:-1]
                         if b in c["rank"] and a in c["rank"] and c["rank"][b] < c["rank"][a]]
                if steps:
                    out.append({"ahead": a, "behind": b, "steps": steps})
    return out


def validation_series(records: Sequence[Mapping[str, Any]], curves: Curves,
                      split: str = "val", metric: str = "acc"
                      ) -> dict[str, list[dict[float, float | None]]]:
    """Per optimizer entry (the records' labels, in order), per seed in seed order: the
    run's `split` `metric` by evaluation step (a run without that curve: no steps)."""
    out: dict[str, list[dict[float, float | None]]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        curve = curves.get(r["run"], {}).get((split, metric))
        points: dict[float, float | None] = {} if curve is None else {
            int(s): v for s, v in zip(curve["step"].tolist(), curve["value"].tolist())}
        out.setdefault(family(dict(r)), []).append(points)
    return out
