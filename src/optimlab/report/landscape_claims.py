"""The lecture's claims judged on a landscape record (paths.json): pure functions of it.

A landscape run has no seeds: each optimizer has one path per η (with gradient noise, one
draw of it), and the comparison is between the paths at each optimizer's chosen η. So a
claim about speed holds when the one side reaches the function's target in fewer steps
(a path that never reaches it counts as the slowest), does not hold the other way round,
and is undecided when both take the same number of steps or neither arrives. An overshoot
is measured along the ravine's floor (`overshoot`). The tests in tests/test_landscape.py
check the same claims against closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from optimlab.report.claims import FAILS, HOLDS, UNDECIDED, Claim, combine

RULE = ("<p>One path per optimizer at its chosen η (no seeds): a claim about speed holds "
        "when one side reaches the target in fewer steps; a path that never reaches it is "
        "the slowest; equal steps, or neither arriving, leave it undecided. An overshoot is "
        "the furthest a path goes past the minimum along the ravine's floor, as a share of "
        "the start's distance along it.</p>")
# Adam's step 1 is ±η in every coordinate: equal within this share, whatever the gradients.
FIRST_STEP_TOLERANCE = 0.02
# Below this share of the start's distance a pass is the hovering every optimizer shows at
# the bottom, not an overshoot: on the ravine it is 0.1, ten times the target's tolerance.
OVERSHOOT_THRESHOLD = 0.01


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


class Overshoot(NamedTuple):
    share: float  # the furthest past the minimum, over the start's distance: 0 if never past
    crossings: int  # how many times the path passes the minimum along the axis
    start: float  # the start's distance from the minimum along the axis


def overshoot(path: Sequence[Sequence[float]], minimum: Sequence[float],
              axis: Sequence[float]) -> Overshoot | None:
    """How far `path` goes past `minimum` along `axis` (a valley floor's direction).

    With d_t = (w_t − w*)·u / |u| signed so that the start's side is positive (d_0 > 0):
    share = max_t max(0, −d_t) / d_0, and a crossing is a change of sign of d_t (a point
    exactly on the minimum is neither side). None when the start has no distance to
    cover along the axis (d_0 = 0).
    """
    norm = math.hypot(axis[0], axis[1])
    d = [((p[0] - minimum[0]) * axis[0] + (p[1] - minimum[1]) * axis[1]) / norm
         for p in path]
    if not d or d[0] == 0:
        return None
    signed = [v / d[0] for v in d]
    sides = [v > 0 for v in signed if v != 0]
    crossings = sum(a != b for a, b in zip(sides, sides[1:]))
    return Overshoot(max(0.0, -min(signed)), crossings, abs(d[0]))


def run_at(run: dict[str, Any], lr: float) -> dict[str, Any] | None:
    """The run at η = `lr`: the chosen one, else the grid's (None: the record has no path)."""
    if math.isclose(run["lr"], lr, rel_tol=1e-12):
        return run
    return next((g for g in run.get("grid") or () if "path" in g
                 and math.isclose(g["lr"], lr, rel_tol=1e-12)), None)


_STOPS = {"nonfinite": "turned non-finite", "left_domain": "left the domain"}


def _shown(name: str, run: dict[str, Any], o: Overshoot) -> str:
    stop = _STOPS.get(run.get("stop", "steps"))
    cut = f", {stop} after {len(run['path']) - 1} steps" if stop else ""
    return (f"{name} η={run['lr']:g}: {100 * o.share:.3g}% ({o.crossings} crossing"
            f"{'s' if o.crossings != 1 else ''}{cut})")


def momentum_overshoots(record: dict[str, Any], fn: str = "ravine") -> Claim:
    """Momentum at its chosen η passes the minimum along the ravine's floor by more than
    OVERSHOOT_THRESHOLD and by more than SGD at the same η, whose pass is the step size's
    own; undecided when it overshoots but no more than SGD."""
    lecture = "Momentum may overshoot."
    rec = record["functions"].get(fn, {})
    runs = rec.get("runs", {})
    if "momentum" not in runs or "sgd" not in runs or not rec.get("valley"):
        return Claim(lecture, None, (f"needs momentum and sgd on {fn}, and the direction of "
                                     "its floor (recorded since overshoots are measured)",))
    mom, sgd = runs["momentum"], run_at(runs["sgd"], runs["momentum"]["lr"])
    if sgd is None:
        return Claim(lecture, None, (f"needs sgd's path on {fn} at momentum's "
                                     f"η={mom['lr']:g}",))
    chosen = {name: (r, overshoot(r["path"], rec["minimum"], rec["valley"]))
              for name, r in runs.items()}
    m, s = chosen["momentum"][1], overshoot(sgd["path"], rec["minimum"], rec["valley"])
    if m is None or s is None:  # every path starts at the function's start
        return Claim(lecture, None, (f"needs a start of {fn} away from the minimum along "
                                     "its floor",))
    verdict = (FAILS if m.share <= OVERSHOOT_THRESHOLD else HOLDS if m.share > s.share
               else UNDECIDED)
    each = "; ".join(_shown(name, r, o) for name, (r, o) in chosen.items() if o is not None)
    return Claim(lecture, verdict, (
        f"{fn}, past the minimum along the floor {tuple(rec['valley'])}, as a share of the "
        f"start's distance {m.start:g} along it (holds above "
        f"{100 * OVERSHOOT_THRESHOLD:g}% and above sgd's at the same η)",
        f"{_shown('momentum', mom, m)}; {_shown('sgd', sgd, s)}",
        f"at each optimizer's chosen η: {each}"))


def landscape_claims(record: dict[str, Any]) -> list[Claim]:
    """Every claim the landscape decides (verdict None where the record cannot)."""
    everywhere = tuple(record["functions"])
    return [faster(record, "momentum", "sgd", ("ravine",),
                   "Momentum is faster in ravines."),
            faster(record, "momentum", "sgd", ("bumpy",), "Momentum helps pass small bumps."),
            faster(record, "adam", "sgd", everywhere,
                   "Adam typically converges faster than SGD."),
            adam_first_steps_equal(record), momentum_overshoots(record)]
