"""The lecture's claims about problem size, decided on a suite's workloads: pure functions.

- LARGE: "Adam typically converges faster than vanilla SGD for complex, high-dimensional
  problems". On the larger half of the workloads (by parameter count), Adam's steps to
  target against SGD's, paired by (workload, seed).
- SMALL: "RMSprop or Momentum might suffice for simpler tasks or smaller networks". On the
  smaller half, each of RMSprop and Momentum against Adam: it suffices when every one of
  its runs reached the target and it was not detected slower than Adam; the claim is
  contradicted when both are detected slower.

Steps to target are taken as fractions of each workload's step budget, so that workloads
of different lengths pool; a run that did not reach counts at the budget (1), as in
`analysis.stats`, which makes the tests. Each test is at level alpha with no correction:
LARGE makes one; SMALL is contradicted only when every contender's test rejects, an
intersection-union test, whose level is alpha as it stands (Berger 1982), and it holds
on a test that did not reject, which no correction could make stricter. A claim's
verdict: "holds", "contradicted", "not supported" (the test detected nothing either way),
"too few seeds", "undecided" (no run reached a target, or a workload's fairness audit left
a pair of the claim undecided: an edge, unequal budgets or steps, a one-sided key; see
`analysis.audit`), or "not measured" (an optimizer or a half missing).

Reference: Berger, R. L. (1982). Multiparameter hypothesis testing and acceptance
sampling. Technometrics 24(4), 295-300.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optimlab.analysis.audit import undecide
from optimlab.analysis.stats import (
    A_BETTER,
    B_BETTER,
    NOT_REACHED,
    TOO_FEW,
    PairedMeasure,
    compare_pair,
)

LARGE = "Adam typically converges faster than vanilla SGD for complex, high-dimensional problems"
SMALL = "RMSprop or Momentum might suffice for simpler tasks or smaller networks"
MEASURE = "steps_to_target_fraction"
UNDECIDED = "undecided"  # no run reached a target: the budget is too small to tell
# (workload -> optimizer -> per-seed fraction of the step budget, None: not reached)
Fractions = Mapping[str, Mapping[str, Sequence[float | None]]]
# workload -> its comparison's fairness audit (`analysis.audit.audit`)
Audits = Mapping[str, Mapping[str, Any]]


def halves(ordered: Sequence[str]) -> tuple[list[str], list[str]]:
    """(smaller half, larger half) of workloads ordered by size; an odd middle one is in
    neither, so that the two halves never share a workload."""
    half = len(ordered) // 2
    return list(ordered[:half]), list(ordered[len(ordered) - half:])


def _pooled(fractions: Fractions, workloads: Sequence[str], a: str, b: str) -> PairedMeasure:
    """a's and b's runs paired by (workload, seed) over the seeds both have."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for w in workloads:
        pairs = list(zip(fractions[w][a], fractions[w][b]))  # seed i with seed i
        xs += [x for x, _ in pairs]
        ys += [y for _, y in pairs]
    return PairedMeasure(MEASURE, xs, ys, lower_is_better=True, cap=1.0)


def _tests(fractions: Fractions, workloads: Sequence[str], pairs: Sequence[tuple[str, str]],
           alpha: float, audits: Audits) -> list[dict[str, Any]]:
    """One comparison object per (a, b), each at level alpha (see the module docstring);
    "undecided" where a workload's audit found the pair unfair (its reasons, each named
    after its workload)."""
    rows = [compare_pair(a, b, [_pooled(fractions, workloads, a, b)], alpha)[0]
            | {"workloads": list(workloads)} for a, b in pairs]
    merged: dict[frozenset[str], dict[str, Any]] = {}
    for w in workloads:
        for u in audits.get(w, {}).get("undecided", []):
            pair = merged.setdefault(frozenset((u["a"], u["b"])),
                                     {"a": u["a"], "b": u["b"], "reasons": []})
            pair["reasons"] += [f"{w}: {r}" for r in u["reasons"]]
    return undecide(rows, {"undecided": list(merged.values())})


def _unfair(rows: Sequence[dict[str, Any]]) -> str | None:
    """Why the claim's tests are not a verdict, when an audit left one undecided."""
    reasons = [f"{r['a']} vs {r['b']}: {'; '.join(r['reasons'])}" for r in rows
               if "test_verdict" in r]
    return f"a workload's audit left the pair undecided ({' | '.join(reasons)})" \
        if reasons else None


def _missing(fractions: Fractions, workloads: Sequence[str], names: Sequence[str]) -> str | None:
    if not workloads:
        return "the suite has fewer than two finished workloads"
    absent = sorted({n for w in workloads for n in names if n not in fractions[w]})
    return f"no runs of {', '.join(absent)}" if absent else None


def _claim(text: str, workloads: list[str], result: str, why: str,
           tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"claim": text, "workloads": workloads, "verdict": result, "why": why,
            "tests": tests}


def large_claim(fractions: Fractions, ordered: Sequence[str], alpha: float,
                audits: Audits | None = None) -> dict[str, Any]:
    """LARGE's verdict from Adam vs SGD on the larger half (`audits`: see `size_claims`)."""
    _, large = halves(ordered)
    missing = _missing(fractions, large, ("adam", "sgd"))
    if missing:
        return _claim(LARGE, large, "not measured", missing, [])
    (row,) = _tests(fractions, large, [("adam", "sgd")], alpha, audits or {})
    unfair = _unfair([row])
    if unfair:
        return _claim(LARGE, large, UNDECIDED, unfair, [row])
    result = {A_BETTER: "holds", B_BETTER: "contradicted", TOO_FEW: TOO_FEW,
              NOT_REACHED: UNDECIDED}.get(row["verdict"], "not supported")
    why = (f"Adam vs SGD, steps to target as a fraction of the budget over {row['n']} "
           f"(workload, seed) pairs: {row['verdict']}")
    return _claim(LARGE, large, result, why, [row])


def small_claim(fractions: Fractions, ordered: Sequence[str], alpha: float,
                audits: Audits | None = None) -> dict[str, Any]:
    """SMALL's verdict from RMSprop and Momentum each against Adam on the smaller half
    (`audits`: see `size_claims`)."""
    small, _ = halves(ordered)
    contenders = [n for n in ("rmsprop", "momentum") if all(n in fractions[w] for w in small)]
    missing = _missing(fractions, small, ("adam",)) or (
        None if contenders else "no runs of rmsprop or momentum")
    if missing:
        return _claim(SMALL, small, "not measured", missing, [])
    rows = _tests(fractions, small, [(n, "adam") for n in contenders], alpha, audits or {})
    unfair = _unfair(rows)
    if unfair:  # the claim rests on every contender's test
        return _claim(SMALL, small, UNDECIDED, unfair, rows)
    tests = "; ".join(f"{r['a']} vs adam: {r['verdict']}" for r in rows)
    verdicts = {r["verdict"] for r in rows}
    if verdicts == {NOT_REACHED}:
        return _claim(SMALL, small, UNDECIDED, f"no run reached a target ({tests})", rows)
    if TOO_FEW in verdicts:  # every test has the same pairs: all can decide or none
        return _claim(SMALL, small, TOO_FEW, f"the paired tests cannot reach alpha ({tests})",
                      rows)
    suffices = [r["a"] for r in rows if r["verdict"] != B_BETTER
                and not any(f is None for w in small for f in fractions[w][r["a"]])]
    if suffices:
        return _claim(SMALL, small, "holds", f"{' and '.join(suffices)} reached the target in "
                      f"every run and was not detected slower than Adam ({tests})", rows)
    if verdicts == {B_BETTER}:
        return _claim(SMALL, small, "contradicted",
                      f"each was detected slower than Adam ({tests})", rows)
    return _claim(SMALL, small, "not supported", "none reached the target in every run "
                  f"without being detected slower than Adam ({tests})", rows)


def size_claims(fractions: Fractions, ordered: Sequence[str], alpha: float,
                audits: Audits | None = None) -> list[dict[str, Any]]:
    """Both claims' verdicts; `ordered`: the finished workloads, smallest first; `audits`:
    each workload's fairness audit, whose undecided pairs leave a claim undecided."""
    return [large_claim(fractions, ordered, alpha, audits),
            small_claim(fractions, ordered, alpha, audits)]
