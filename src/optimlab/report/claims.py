"""What the lecture says, and what this run shows: the lecture's claims judged on records.

Everything here is a pure function of plain records (summary records, sweep points,
diagnostics), so that every verdict can be tested on made-up records.

The rule for one measure (a per-seed value of contender A and of contender B, paired by
seed) is the paired comparison of `optimlab.analysis.stats`: a sign-flip permutation test
at level alpha, Holm-corrected across every measure the claim uses, with a t-interval on
the difference. A measure favours A or B only when the test rejects; "too few seeds" when
no outcome of these seeds could reach alpha (2 seeds never can), and then it decides
nothing. Speed is measured in steps (time to target, interpolated between evaluations,
and the train loss after equal steps), never on the wall clock. A claim measured several
ways holds when at least one measure holds and none contradicts it; it does not hold in
the mirror case; mixed measures are undecided.
A claim the records cannot measure gets no verdict at all, only the reason.
A claim is undecided while the comparison's fairness audit (`optimlab.analysis.audit`)
leaves a pair of its optimizers undecided: a tuned value on the edge of its range (the best
value may lie beyond it, and the comparison with it), unequal budgets or steps, or a
hyperparameter tuned for one side only. A folder written before audits were stored is
judged on the tuned values' edges alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from optimlab.analysis.records import family
from optimlab.analysis.stats import (
    A_BETTER,
    ALPHA,
    B_BETTER,
    NO_DIFFERENCE,
    NOT_REACHED,
    TOO_FEW,
    PairedMeasure,
    compare_pair,
)

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"
# A spread of effective step sizes below this factor (q_hi/q_lo in one layer) is no contrast.
STEP_CONTRAST = 2.0


@dataclass(frozen=True)
class Measure:
    """One way of measuring a claim: per-seed values of A and B, position i being seed i
    of both (None: not reached, with `cap` the step budget it counts at; else missing)."""

    name: str
    a_label: str
    b_label: str
    a: tuple[float | None, ...]
    b: tuple[float | None, ...]
    lower_is_better: bool
    unit: str = ""
    cap: float | None = None

    def paired(self) -> PairedMeasure:
        return PairedMeasure(self.name, self.a, self.b, self.lower_is_better, self.cap)


_VERDICTS = {A_BETTER: HOLDS, B_BETTER: FAILS}


def judge(measures: Sequence[Measure], alpha: float = ALPHA
          ) -> list[tuple[Measure, dict[str, Any]]]:
    """Each measure with its comparison object (`analysis.stats.compare_pair`), Holm-corrected
    across all of them: the measures of one claim are tested together."""
    rows = compare_pair("a", "b", [m.paired() for m in measures], alpha)
    return [(m, r | {"a": m.a_label, "b": m.b_label}) for m, r in zip(measures, rows,
                                                                        strict=True)]


def verdict_of(row: dict[str, Any]) -> str:
    """HOLDS when the test favours A, FAILS when it favours B, UNDECIDED otherwise."""
    return _VERDICTS.get(row["verdict"], UNDECIDED)


def evidence(m: Measure, row: dict[str, Any]) -> str:
    """The numbers behind one measure's verdict: both sides, the difference with its
    interval, p, the test, alpha and the seed count."""
    sides = f"{m.name}: {m.a_label} {_side(m.a, m)} vs {m.b_label} {_side(m.b, m)}"
    level, n = f"α = {row['alpha']:g}", row["n"]
    seeds = f"{n} paired seed{'s' if n != 1 else ''}"
    if row["verdict"] == NOT_REACHED:
        return f"{sides} — not reached by any run ({seeds})"
    if row["verdict"] == TOO_FEW:
        return (f"{sides} — too few seeds: {seeds} cannot reach {level} with the paired "
                f"sign-flip test (a verdict needs at least {row['seeds_needed']})")
    ci = row["ci"]
    interval = f" [{_fmt(ci[0], m.unit)}, {_fmt(ci[1], m.unit)}]" if ci else ""
    holm = f", Holm {row['p_holm']:.3g}" if row["p_holm"] != row["p"] else ""
    outcome = {A_BETTER: f"{m.a_label} better", B_BETTER: f"{m.b_label} better"}.get(
        row["verdict"], row["verdict"])
    return (f"{sides}; difference {_fmt(row['difference'], m.unit)}{interval} "
            f"({100 * row['ci_level']:g}% t-interval), p = {row['p']:.3g}{holm} (paired "
            f"sign-flip test, {level}, {seeds}) — {outcome}")


@dataclass(frozen=True)
class Claim:
    lecture: str  # the claim as the lecture states it
    verdict: str | None  # HOLDS, FAILS, UNDECIDED; None: these records cannot measure it
    evidence: tuple[str, ...] = field(default=())  # the numbers behind the verdict, or why not


def _fmt(x: float, unit: str) -> str:
    if unit == "%":
        return f"{100 * x:.1f}%"
    return f"{x:.3g}{unit}"


def _side(values: Sequence[float | None], m: Measure) -> str:
    """One side's mean, as the test sees it: a run that did not reach the target counts at
    the step budget (a restricted mean); a missing value (diverged) is left out."""
    missing = sum(v is None or not math.isfinite(v) for v in values)
    if m.cap is not None:
        if missing == len(values):
            return "not reached"
        text = _fmt(statistics.fmean(m.cap if v is None else v for v in values), m.unit)
        return text + (f" ({missing} of {len(values)} not reached, counted at the {m.cap:g}-"
                       "step budget)" if missing else "")
    done = [v for v in values if v is not None and math.isfinite(v)]
    if not done:
        return "diverged"
    return _fmt(statistics.fmean(done), m.unit) + (f" (diverged in {missing}, left out)"
                                                   if missing else "")


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


def _by_seed(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str
             ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """`key` of the runs of a and of b, paired by seed (the seeds both have)."""
    sa, sb = {r.get("seed"): r for r in a}, {r.get("seed"): r for r in b}
    seeds = sorted(sa.keys() & sb.keys(), key=str)
    return tuple(sa[s].get(key) for s in seeds), tuple(sb[s].get(key) for s in seeds)


def speed_measures(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[Measure]:
    """Time to target in steps (when the runs set a target and had a validation split; a
    run that never reached it, diverged ones included, counts at the step budget) and the
    final train loss when both ran the same number of steps."""
    la, lb, out = _label(a[0]), _label(b[0]), []
    runs = a + b
    if all(r.get("target_acc") is not None and r.get("final_val_acc") is not None or
           r.get("diverged") for r in runs) and any(r.get("target_acc") for r in runs):
        target = next(r["target_acc"] for r in runs if r.get("target_acc"))
        cap = max(r.get("steps_planned") or r.get("steps") or 0 for r in runs)
        out.append(Measure(f"steps to {target:.0%} validation accuracy", la, lb,
                           *_by_seed(a, b, "time_to_target_step"), True, " steps", cap))
    if len({r.get("steps_planned") for r in runs}) == 1:
        out.append(Measure(f"train loss after {runs[0].get('steps_planned')} steps", la, lb,
                           *_by_seed(a, b, "final_train_loss"), True))
    return out


def _pairwise(records: Sequence[dict[str, Any]], a_name: str, b_name: str, lecture: str,
              measures_of: Any, *, need: str, alpha: float) -> Claim:
    """A claim comparing every configuration of `a_name` with every one of `b_name`."""
    ga, gb = groups(records, a_name), groups(records, b_name)
    if not ga or not gb:
        return Claim(lecture, None, (f"needs runs of {a_name} and of {b_name}; {need}",))
    measures = [m for x in ga for y in gb for m in measures_of(x, y)]
    if not measures:
        return Claim(lecture, None, ("no measure applies (no target accuracy, and the runs "
                                     "differ in length)",))
    judged = judge(measures, alpha)
    return Claim(lecture, combine([verdict_of(r) for _, r in judged]),
                 tuple(evidence(m, r) for m, r in judged))


def adam_faster_than_sgd(records: Sequence[dict[str, Any]], alpha: float = ALPHA) -> Claim:
    return _pairwise(records, "adam", "sgd", "Adam typically converges faster than SGD.",
                     speed_measures, need="run compare with both", alpha=alpha)


def momentum_faster_than_sgd(records: Sequence[dict[str, Any]], alpha: float = ALPHA
                             ) -> Claim:
    return _pairwise(records, "momentum", "sgd",
                     "Momentum accelerates SGD (faster, above all in ravines).", speed_measures,
                     need="run compare with both", alpha=alpha)


def _accuracy(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> Measure:
    return Measure("final test accuracy", _label(a[0]), _label(b[0]),
                   *_by_seed(a, b, "final_test_acc"), False, "%")


NOT_TUNED = "this run did not tune η (use compare --tune, or a sweep over several η)"


def tuned_sgd_matches_adam(records: Sequence[dict[str, Any]], *, tuned: bool,
                           not_tuned: str = NOT_TUNED, alpha: float = ALPHA) -> Claim:
    """"Match or surpass": Adam not significantly better. Only for tuned runs (`not_tuned`:
    why these were not)."""
    lecture = "Plain SGD or Momentum can match or surpass Adam if carefully tuned."
    if not tuned:
        return Claim(lecture, None, (not_tuned,))
    measures = [_accuracy(x, y) for name in ("sgd", "momentum") for x in groups(records, name)
                for y in groups(records, "adam")]
    if not measures:
        return Claim(lecture, None, ("needs tuned runs of adam and of sgd or momentum",))
    judged = judge(measures, alpha)
    # below Adam at alpha fails to match; no difference detected, or above, matches
    verdicts = [FAILS if r["verdict"] == B_BETTER else
                HOLDS if r["verdict"] in (A_BETTER, NO_DIFFERENCE) else UNDECIDED
                for _, r in judged]
    # "SGD or Momentum": one of them matching is enough.
    verdict = HOLDS if HOLDS in verdicts else (FAILS if all(v == FAILS for v in verdicts)
                                               else UNDECIDED)
    return Claim(lecture, verdict, tuple(evidence(m, r).replace(
        NO_DIFFERENCE, "matched: no difference detected") for m, r in judged))


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


def unless_audited(claim: Claim, names: Sequence[str], records: Sequence[dict[str, Any]],
                   found: dict[str, Any]) -> Claim:
    """`claim`, comparing the optimizers `names`; undecided, with the reasons first, when
    the fairness audit `found` (summary.json's "audit", `optimlab.analysis.audit`) made a
    pair of their entries undecided, as the comparisons of that pair read."""
    labels = {family(r) for r in records if r.get("optimizer") in names}
    reasons = dict.fromkeys(why for u in found.get("undecided", [])
                            if {u["a"], u["b"]} <= labels for why in u["reasons"])
    if claim.verdict is None or not reasons:
        return claim
    return Claim(claim.lecture, UNDECIDED, ("fairness audit: " + "; ".join(reasons),
                                            *claim.evidence))


def lecture_claims(records: Sequence[dict[str, Any]], *, tuned: bool = False,
                   not_tuned: str = NOT_TUNED, edges: dict[str, dict[str, str]] | None = None,
                   lr_lines: dict[str, dict[float, list[float | None]]] | None = None,
                   diagnostics: Sequence[dict[str, Any]] = (), alpha: float = ALPHA,
                   audit: dict[str, Any] | None = None) -> list[Claim]:
    """Every claim, judged on these records (verdict None where they cannot decide it).
    `tuned`: the records are of tuned configurations (`not_tuned`: why not, when not);
    `edges`: their tuned values on the edge of the grid (see `unless_on_edge`); `alpha`:
    the level of the tests behind the comparing claims; `audit`: the comparison's fairness
    audit (see `unless_audited`; it holds the edges, so `edges` is then not needed)."""
    compared = [(adam_faster_than_sgd(records, alpha), ("adam", "sgd")),
                (momentum_faster_than_sgd(records, alpha), ("momentum", "sgd")),
                (tuned_sgd_matches_adam(records, tuned=tuned, not_tuned=not_tuned,
                                        alpha=alpha), ("sgd", "momentum", "adam"))]
    return [*(unless_audited(c, names, records, audit) if audit else
              unless_on_edge(c, names, records, edges or {}) if tuned else c
              for c, names in compared),
            learning_rate_is_crucial(lr_lines or {}),
            rmsprop_large_gradients_smaller_steps(diagnostics)]
