"""The lecture's claims judged on a landscape record (paths.json): pure functions of it.

A landscape run has no seeds: each optimizer has one path per η (with gradient noise, one
draw of it), and the comparison is between the paths at each optimizer's chosen η. So a
claim about speed holds when the one side reaches the function's target in fewer steps
(a path that never reaches it counts as the slowest), does not hold the other way round,
and is undecided when both take the same number of steps or neither arrives. The tests
in tests/test_landscape.py check the same claims against closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optimlab.report.claims import FAILS, HOLDS, UNDECIDED, Claim, combine

RULE = ("<p>One path per optimizer at its chosen η (no seeds): a claim about speed holds "
        "when one side reaches the target in fewer steps; a path that never reaches it is "
        "the slowest; equal steps, or neither arriving, leave it undecided.</p>")
# Adam's step 1 is ±η in every coordinate: equal within this share, whatever the gradients.
FIRST_STEP_TOLERANCE = 0.02


def _steps(run: dict[str, Any]) -> float:
    return math.inf if run["steps_to_tol"] is None else float(run["steps_to_tol"])


def _reach(name: str, run: dict[str, Any]) -> str:
    where = ("never reaches it" + (f" ({run['final_distance']:.3g} away at the end)"
                                   if run.get("final_distance") is not None else "")
             if run["steps_to_tol"] is None else f"reaches it in {run['steps_to_tol']} steps")
    return f"{name} η={run['lr']:g} {where}"


def faster(record: dict[str, Any], a: str, b: str, functions: Sequence[str],
           lecture: str) -> Claim:
    """`a` reaches the target in fewer steps than `b`, on each of `functions` the record
    holds (one verdict per function, combined as claims.combine does)."""
    verdicts, evidence = [], []
    for fn in functions:
        runs = record["functions"].get(fn, {}).get("runs", {})
        if a not in runs or b not in runs:
            continue
        sa, sb = _steps(runs[a]), _steps(runs[b])
        verdict = (UNDECIDED if sa == sb else HOLDS if sa < sb else FAILS)
        verdicts.append(verdict)
        evidence.append(f"{fn} ({record['functions'][fn]['target']}): "
                        f"{_reach(a, runs[a])}; {_reach(b, runs[b])}")
    if not verdicts:
        return Claim(lecture, None, (f"needs {a} and {b} on {' or '.join(functions)}",))
    return Claim(lecture, combine(verdicts), tuple(evidence))


def first_step_ratio(path: Sequence[Sequence[float]]) -> float | None:
    """|Δx| / |Δy| of a path's first step (None when a coordinate did not move)."""
    if len(path) < 2:
        return None
    dx, dy = abs(path[1][0] - path[0][0]), abs(path[1][1] - path[0][1])
    return dx / dy if dy > 0 and dx > 0 else None


def adam_first_steps_equal(record: dict[str, Any], fn: str = "ravine") -> Claim:
    """Adam's first step moves both coordinates by η, where SGD's follow the gradient."""
    lecture = ("Adam's first steps are about equal in every coordinate, whatever the "
               "gradients' scales.")
    runs = record["functions"].get(fn, {}).get("runs", {})
    ratio = first_step_ratio(runs["adam"]["path"]) if "adam" in runs else None
    if ratio is None:
        return Claim(lecture, None, (f"needs an Adam path on {fn} that moves both "
                                     "coordinates",))
    text = f"{fn}, step 1 of adam η={runs['adam']['lr']:g}: |Δx| / |Δy| = {ratio:.3g}"
    sgd = first_step_ratio(runs["sgd"]["path"]) if "sgd" in runs else None
    if sgd is not None:
        text += f" (sgd's, which follows the gradient: {sgd:.3g})"
    verdict = HOLDS if abs(ratio - 1) <= FIRST_STEP_TOLERANCE else FAILS
    return Claim(lecture, verdict, (text,))


def landscape_claims(record: dict[str, Any]) -> list[Claim]:
    """Every claim the landscape decides (verdict None where the record cannot)."""
    everywhere = tuple(record["functions"])
    return [faster(record, "momentum", "sgd", ("ravine",),
                   "Momentum is faster in ravines."),
            faster(record, "momentum", "sgd", ("bumpy",), "Momentum helps pass small bumps."),
            faster(record, "adam", "sgd", everywhere,
                   "Adam typically converges faster than SGD."),
            adam_first_steps_equal(record)]
