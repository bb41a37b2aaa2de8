"""What the lecture says, and what this run shows: the lecture's claims judged on records.

Everything here is a pure function of plain records (summary records, sweep points,
diagnostics), so that every verdict can be tested on made-up records.

The rule for one measure (a per-seed value of contender A and of contender B) is the
most conservative one that seeds allow: A beats B when *every* seed of A is better than
*every* seed of B (the ranges do not overlap), B beats A the other way round, and
anything else is undecided within the seed spread. One seed has no spread, so it
decides nothing. A claim measured several ways holds when at least one measure holds
and none contradicts it; it does not hold in the mirror case; mixed measures are
undecided. A claim the records cannot measure gets no verdict at all, only the reason.
A claim that compares tuned optimizers is undecided while one of them has a tuned value
on the edge of its grid: the best value may lie beyond it, and the comparison with it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from optimlab.analysis.records import family

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"
# A spread of effective step sizes below this factor (q_hi/q_lo in one layer) is no contrast.
STEP_CONTRAST = 2.0


@dataclass(frozen=True)
class Measure:
    """One way of measuring a claim: per-seed values of A and B (inf: never / diverged)."""

    name: str
    a_label: str
    b_label: str
    a: tuple[float, ...]
    b: tuple[float, ...]
    lower_is_better: bool
    unit: str = ""

    @property
    def verdict(self) -> str:
        if len(self.a) < 2 or len(self.b) < 2:
            return UNDECIDED
        sign = 1.0 if self.lower_is_better else -1.0
        a, b = [sign * x for x in self.a], [sign * x for x in self.b]
        if max(a) < min(b):
            return HOLDS
        if max(b) < min(a):
            return FAILS
        return UNDECIDED

    def text(self) -> str:
        why = {HOLDS: f"{self.a_label} better in every seed", FAILS: f"{self.b_label} better "
               "in every seed", UNDECIDED: "one seed: no spread" if min(len(self.a), len(
                   self.b)) < 2 else "the seed ranges overlap"}[self.verdict]
        return (f"{self.name}: {self.a_label} {_spread(self.a, self.unit)} vs {self.b_label} "
                f"{_spread(self.b, self.unit)} — {why}")


@dataclass(frozen=True)
class Claim:
    lecture: str  # the claim as the lecture states it
    verdict: str | None  # HOLDS, FAILS, UNDECIDED; None: these records cannot measure it
    evidence: tuple[str, ...] = field(default=())  # the numbers behind the verdict, or why not


def _fmt(x: float, unit: str) -> str:
    if math.isinf(x):
        return "never" if unit == " s" else "diverged"
    if unit == "%":
        return f"{100 * x:.1f}%"
    return f"{x:.3g}{unit}"


def _spread(values: Sequence[float], unit: str) -> str:
    if not values:
        return "(no runs)"
    if len(values) == 1:  # no spread to show
        return f"{_fmt(values[0], unit)} (one seed)"
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return f"{_fmt(values[0], unit)} ({len(values)} of {len(values)} seeds)"
    mean = _fmt(statistics.fmean(finite), unit)
    if len(finite) < len(values):
        mean = f"{mean} in {len(finite)} seeds, {_fmt(math.inf, unit)} in the others"
    return f"{mean} [{_fmt(min(values), unit)}…{_fmt(max(values), unit)}, {len(values)} seeds]"


def combine(verdicts: Sequence[str]) -> str:
    """The claim's verdict from its measures' (see the module docstring)."""
    if HOLDS in verdicts and FAILS not in verdicts:
        return HOLDS
    if FAILS in verdicts and HOLDS not in verdicts:
        return FAILS
    return UNDECIDED


def _label(r: dict[str, Any]) -> str:
    hp = r.get("hyperparameters") or {}
    lr = f" η={hp['lr']:g}" if isinstance(hp.get("lr"), (int, float)) else ""
    return family(r) + lr


def groups(records: Sequence[dict[str, Any]], optimizer: str) -> list[list[dict[str, Any]]]:
    """The runs of `optimizer`, one list per distinct configuration (label, hyperparameters)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("optimizer") == optimizer:
            key = repr((r.get("label"), sorted((r.get("hyperparameters") or {}).items())))
            out.setdefault(key, []).append(r)
    return list(out.values())


def _worse_if_none(x: Any, lower_is_better: bool) -> float:
    if x is None or not math.isfinite(x):
        return math.inf if lower_is_better else -math.inf
    return float(x)


def speed_measures(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[Measure]:
    """Time to target (when the run set one and had a validation split) and the final
    train loss when both ran the same number of steps. Diverged seeds count as worst."""
    la, lb, out = _label(a[0]), _label(b[0]), []
    runs = a + b
    if all(r.get("target_acc") is not None and r.get("final_val_acc") is not None or
           r.get("diverged") for r in runs) and any(r.get("target_acc") for r in runs):
        target = next(r["target_acc"] for r in runs if r.get("target_acc"))
        out.append(Measure(f"time to {target:.0%} validation accuracy", la, lb,
                           tuple(_worse_if_none(r.get("time_to_target_s"), True) for r in a),
                           tuple(_worse_if_none(r.get("time_to_target_s"), True) for r in b),
                           True, " s"))
    if len({r.get("steps_planned") for r in runs}) == 1:
        out.append(Measure(f"train loss after {runs[0].get('steps_planned')} steps", la, lb,
                           tuple(_worse_if_none(r.get("final_train_loss"), True) for r in a),
                           tuple(_worse_if_none(r.get("final_train_loss"), True) for r in b),
                           True))
    return out


def _pairwise(records: Sequence[dict[str, Any]], a_name: str, b_name: str, lecture: str,
              measures_of: Any, *, need: str) -> Claim:
    """A claim comparing every configuration of `a_name` with every one of `b_name`."""
    ga, gb = groups(records, a_name), groups(records, b_name)
    if not ga or not gb:
        return Claim(lecture, None, (f"needs runs of {a_name} and of {b_name}; {need}",))
    measures = [m for x in ga for y in gb for m in measures_of(x, y)]
    if not measures:
        return Claim(lecture, None, ("no measure applies (no target accuracy, and the runs "
                                     "differ in length)",))
    return Claim(lecture, combine([m.verdict for m in measures]),
                 tuple(m.text() for m in measures))


def adam_faster_than_sgd(records: Sequence[dict[str, Any]]) -> Claim:
    return _pairwise(records, "adam", "sgd", "Adam typically converges faster than SGD.",
                     speed_measures, need="run compare with both")


def momentum_faster_than_sgd(records: Sequence[dict[str, Any]]) -> Claim:
    return _pairwise(records, "momentum", "sgd",
                     "Momentum accelerates SGD (faster, above all in ravines).", speed_measures,
                     need="run compare with both")


def _accuracy(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[Measure]:
    return [Measure("final test accuracy", _label(a[0]), _label(b[0]),
                    tuple(_worse_if_none(r.get("final_test_acc"), False) for r in a),
                    tuple(_worse_if_none(r.get("final_test_acc"), False) for r in b),
                    False, "%")]


NOT_TUNED = "this run did not tune η (use compare --tune, or a sweep over several η)"


def tuned_sgd_matches_adam(records: Sequence[dict[str, Any]], *, tuned: bool,
                           not_tuned: str = NOT_TUNED) -> Claim:
    """"Match or surpass": within Adam's seed range or above it. Only for tuned runs
    (`not_tuned`: why these were not)."""
    lecture = "Plain SGD or Momentum can match or surpass Adam if carefully tuned."
    if not tuned:
        return Claim(lecture, None, (not_tuned,))
    verdicts, evidence = [], []
    for name in ("sgd", "momentum"):
        for x in groups(records, name):
            for y in groups(records, "adam"):
                m = _accuracy(x, y)[0]
                # below Adam in every seed fails to match; overlapping or above matches
                verdicts.append(UNDECIDED if min(len(m.a), len(m.b)) < 2 else
                                FAILS if m.verdict == FAILS else HOLDS)
                evidence.append(m.text().replace("the seed ranges overlap",
                                                 "matched within the seed spread"))
    if not verdicts:
        return Claim(lecture, None, ("needs tuned runs of adam and of sgd or momentum",))
    # "SGD or Momentum": one of them matching is enough.
    verdict = HOLDS if HOLDS in verdicts else (FAILS if all(v == FAILS for v in verdicts)
                                               else UNDECIDED)
    return Claim(lecture, verdict, tuple(evidence))


def learning_rate_is_crucial(lines: dict[str, dict[float, list[float | None]]]) -> Claim:
    """`lines`: optimizer -> η -> final validation accuracy per seed (None: diverged), along
    the η line through the optimizer's best configuration. η matters when the accuracy
    across η varies more than across seeds, or when some η diverges and another trains."""
    lecture = "The learning rate is still crucial, even for adaptive methods."
    verdicts, evidence = [], []
    for name, per_lr in lines.items():
        if len(per_lr) < 3:
            continue
        means = {lr: statistics.fmean(v) for lr, v in per_lr.items()  # type: ignore[arg-type]
                 if v and all(x is not None for x in v)}
        diverged = sorted(lr for lr, v in per_lr.items() if any(x is None for x in v))
        spreads = [max(cast("list[float]", v)) - min(cast("list[float]", v))
                   for v in per_lr.values()
                   if len(v) > 1 and all(x is not None for x in v)]
        gap = max(means.values()) - min(means.values()) if means else 0.0
        best = max(means, key=means.__getitem__) if means else None
        text = (f"{name}: val accuracy over η {min(per_lr):g}…{max(per_lr):g} spans "
                f"{100 * gap:.1f} points" + (f" (best η={best:g})" if best else ""))
        if diverged and means:
            verdicts.append(HOLDS)
            text += f"; η={', '.join(f'{x:g}' for x in diverged)} diverged"
        elif spreads:
            spread = max(spreads)
            verdicts.append(HOLDS if gap > spread else FAILS)
            text += f"; seed spread at most {100 * spread:.1f} points"
        else:
            verdicts.append(UNDECIDED)
            text += "; one seed per η: no spread to compare with"
        evidence.append(text)
    if not verdicts:
        return Claim(lecture, None, ("needs a sweep of at least 3 values of η",))
    return Claim(lecture, combine(verdicts), tuple(evidence))


def rmsprop_large_gradients_smaller_steps(diagnostics: Sequence[dict[str, Any]]) -> Claim:
    """From the step-size recorder: the effective step η/(√ŝ+ε) is smaller where the running
    mean of g² is larger, by construction; what a run can show is how strongly the steps
    of one layer differ. Holds with a contrast of STEP_CONTRAST or more; else undecided."""
    lecture = "RMSprop: large gradients lead to smaller steps, small gradients to larger ones."
    best: tuple[float, str] | None = None
    for entry in diagnostics:
        if entry.get("optimizer") != "rmsprop":
            continue
        for result in (entry.get("diagnostics") or {}).values():
            if not isinstance(result, dict) or not result.get("effective_step"):
                continue
            qs = result["quantiles"]
            lo, hi = f"q{min(qs):g}", f"q{max(qs):g}"
            for layer, series in result["effective_step"].items():
                a, b = series[lo][-1], series[hi][-1]
                if a and a > 0 and b:
                    text = (f"{entry.get('run', 'rmsprop')}, {layer} at step "
                            f"{result['steps'][-1]}: effective steps η/(√ŝ+ε) from {a:.3g} "
                            f"({lo}) to {b:.3g} ({hi}), ×{b / a:.3g}")
                    if best is None or b / a > best[0]:
                        best = (b / a, text)
    if best is None:
        return Claim(lecture, None, ("needs an RMSprop run recorded with --diagnostics",))
    ratio, text = best
    if ratio >= STEP_CONTRAST:
        return Claim(lecture, HOLDS, (text + ": the elements with the larger running mean of "
                                      "g² take the smaller steps",))
    return Claim(lecture, UNDECIDED, (text + f": less than ×{STEP_CONTRAST:g}, too uniform "
                                      "to show the effect",))


def _edge_text(records: Sequence[dict[str, Any]], name: str, key: str, side: str) -> str:
    hp = next((r.get("hyperparameters") or {} for r in records if family(r) == name), {})
    betas = hp.get("betas") or ()
    value = betas[key == "beta2"] if key in ("beta1", "beta2") and betas else hp.get(key)
    shown = f"={value:g}" if isinstance(value, (int, float)) else ""
    symbol = "η" if key == "lr" else key
    return f"{name}'s tuned {symbol}{shown} lies on the {side} edge of its grid"


def unless_on_edge(claim: Claim, names: Sequence[str], records: Sequence[dict[str, Any]],
                   edges: dict[str, dict[str, str]]) -> Claim:
    """`claim`, comparing the tuned optimizers `names`; undecided, with the reason first,
    when one of them has a tuned value on the edge of its grid (`edges`: label -> {key:
    "low" | "high"}, as compare --tune and the sweep record them)."""
    labels = dict.fromkeys(family(r) for r in records if r.get("optimizer") in names)
    found = [_edge_text(records, name, key, side) for name in labels
             for key, side in sorted((edges.get(name) or {}).items())]
    if claim.verdict is None or not found:
        return claim
    why = ("; ".join(found) + ": a better value may lie past that edge, so the comparison is "
           "not decided (widen the grid there: sweep --select val --extend-edges)")
    return Claim(claim.lecture, UNDECIDED, (why, *claim.evidence))


def lecture_claims(records: Sequence[dict[str, Any]], *, tuned: bool = False,
                   not_tuned: str = NOT_TUNED, edges: dict[str, dict[str, str]] | None = None,
                   lr_lines: dict[str, dict[float, list[float | None]]] | None = None,
                   diagnostics: Sequence[dict[str, Any]] = ()) -> list[Claim]:
    """Every claim, judged on these records (verdict None where they cannot decide it).
    `tuned`: the records are of tuned configurations (`not_tuned`: why not, when not);
    `edges`: their tuned values on the edge of the grid (see `unless_on_edge`)."""
    compared = [(adam_faster_than_sgd(records), ("adam", "sgd")),
                (momentum_faster_than_sgd(records), ("momentum", "sgd")),
                (tuned_sgd_matches_adam(records, tuned=tuned, not_tuned=not_tuned),
                 ("sgd", "momentum", "adam"))]
    return [*(unless_on_edge(c, names, records, edges or {}) if tuned else c
              for c, names in compared),
            learning_rate_is_crucial(lr_lines or {}),
            rmsprop_large_gradients_smaller_steps(diagnostics)]
