"""The fairness audit of a comparison: whether its optimizers were given equal chances.

Torch-free: a pure function of the tuning table (what each entry tuned, with what budget,
see `optimlab.lab.tuning`) and the summary records, so that a report can show it and a
test can build it from made-up records.

What it checks, for every entry (Choi et al. 2019; Sivaprasad et al. 2020):
- the tuning budget, trials × steps per trial, and whether it is equal for all entries;
- hyperparameters at the edge of their range (a grid's edge, or within 5 % of a sampled
  range's ends, `optimlab.lab.search.EDGE_BAND`): the optimum may lie beyond, and the
  comparison with it;
- hyperparameters of an entry's declared search space that one entry tuned and another
  held fixed;
- runs of unequal length;
- η decayed inside the run: by a schedule, or by the optimizer's own update;
- the seeds behind each entry.

A verdict resting on an edge, on unequal budgets, on unequal steps or on a hyperparameter
tuned for one side only is not a verdict: `undecide` turns it into "undecided", with the
reasons, and keeps what the test said under "test_verdict".

References:
- Choi, D. et al. (2019). On Empirical Comparisons of Optimizers for Deep Learning. arXiv
  1910.05446.
- Sivaprasad, P. T. et al. (2020). Optimizer Benchmarking Needs to Account for
  Hyperparameter Tuning. ICML.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

from optimlab.analysis.records import family
from optimlab.analysis.stats import NOT_REACHED, TOO_FEW

UNDECIDED = "undecided"


def _symbol(key: str) -> str:
    return "η" if key == "lr" else key


def _budget_text(label: str, t: dict[str, Any]) -> str:
    if not t["trials"]:
        return f"{label} 0 (untuned)"
    return f"{label} {t['trials']} × {t['steps_per_trial']} = {t['budget']}"


def _budget_finding(table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Equal or unequal budgets; with no tuning at all, the fixed values compared."""
    budgets = {t["budget"] for t in table.values()}
    if budgets == {0}:
        lrs = ", ".join(f"{label} {t['lr']:g}" for label, t in table.items())
        how = "the lab's fixed default per optimizer" if all(
            t["source"] == "default" for t in table.values()) else "fixed (given or default)"
        return {"kind": "budget", "entries": list(table), "text":
                f"η is {how} ({lrs}), untuned for all: equal budgets of 0 trials; the "
                "verdicts compare these settings, not each optimizer at its best"}
    sizes = "; ".join(_budget_text(label, t) for label, t in table.items())
    if len(budgets) == 1:
        return {"kind": "budget", "entries": list(table),
                "text": f"equal tuning budgets, trials × steps per trial: {sizes}"}
    return {"kind": "budget", "entries": list(table), "unequal": True,
            "text": f"unequal tuning budgets, trials × steps per trial: {sizes}"}


def _edge_text(label: str, t: dict[str, Any], key: str, side: str) -> str:
    lo, hi = (t.get("space") or {}).get(key, (None, None))
    span = f" {lo:g}..{hi:g}" if lo is not None else ""
    value = t.get("values", {}).get(key)
    shown = f"={value:g}" if isinstance(value, (int, float)) else ""
    return (f"{label}'s tuned {_symbol(key)}{shown} lies on the {side} edge of its range"
            f"{span}: the optimum may lie beyond (more trials or a wider range can tell)")


def _mixed_keys(ta: dict[str, Any], tb: dict[str, Any]) -> list[str]:
    """Keys one entry tuned that the other held fixed although its search space has them."""
    return sorted({*(set(ta["tuned"]) & set(tb["untuned"])),
                   *(set(tb["tuned"]) & set(ta["untuned"]))})


def _per_entry(records: Sequence[dict[str, Any]], get: Callable[[dict[str, Any]], Any]
               ) -> dict[str, set[Any]]:
    """entry -> the distinct values of `get` over its records, in the records' order."""
    out: dict[str, set[Any]] = {}
    for r in records:
        out.setdefault(family(r), set()).add(get(r))
    return out


def _steps(records: Sequence[dict[str, Any]]) -> dict[str, set[int]]:
    return _per_entry(records, lambda r: r.get("steps_planned") or r["steps"])


def pair_reasons(a: str, b: str, table: dict[str, dict[str, Any]],
                 steps: dict[str, set[int]]) -> list[str]:
    """Why a verdict between entries a and b would not be fair (empty: it would be)."""
    ta, tb = table[a], table[b]
    reasons = [_edge_text(label, t, key, side) for label, t in ((a, ta), (b, tb))
               for key, side in sorted(t["edge"].items())]
    if ta["budget"] != tb["budget"]:
        reasons.append(f"unequal tuning budgets ({_budget_text(a, ta)}; {_budget_text(b, tb)})")
    mixed = _mixed_keys(ta, tb)
    if mixed:
        reasons.append(f"{', '.join(map(_symbol, mixed))} tuned for one of {a}, {b} and held "
                       "fixed for the other")
    if steps.get(a) and steps.get(b) and steps[a] != steps[b]:
        reasons.append(f"unequal steps per run ({a} {sorted(steps[a])}, {b} {sorted(steps[b])})")
    return reasons


def _tuning_findings(table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Edges, and keys tuned for some entries but held fixed for others."""
    out = [{"kind": "edge", "entries": [label], "text": _edge_text(label, t, key, side)}
           for label, t in table.items() for key, side in sorted(t["edge"].items())]
    keys = {k for t in table.values() for k in t["tuned"]}
    for key in sorted(keys):
        fixed = [label for label, t in table.items() if key in t["untuned"]]
        if fixed:
            tuned = [label for label, t in table.items() if key in t["tuned"]]
            out.append({"kind": "untuned", "entries": fixed, "text":
                        f"{_symbol(key)} tuned for {', '.join(tuned)} but held fixed for "
                        f"{', '.join(fixed)}"})
    return out


def _run_findings(steps: dict[str, set[int]], seeds: dict[str, int], schedule: str,
                  decays: dict[str, str]) -> list[dict[str, Any]]:
    """Steps per run, η decayed inside the runs, and the seeds per entry."""
    out = []
    if len({s for v in steps.values() for s in v}) > 1:
        out.append({"kind": "steps", "entries": list(steps), "text": "unequal steps per run: "
                    + ", ".join(f"{k} {sorted(v)}" for k, v in steps.items())})
    if schedule != "constant":
        out.append({"kind": "schedule", "entries": list(steps), "text":
                    f"every run decays η by the schedule {schedule} (the same for all)"})
    out += [{"kind": "schedule", "entries": [label], "text": f"{label} decays its step "
             f"inside its own update: {why}"} for label, why in decays.items()]
    text = ", ".join(f"{k} {n}" for k, n in seeds.items())
    out.append({"kind": "seeds", "entries": list(seeds), "text": f"seeds per entry: {text}"
                + ("; unequal: the paired tests use the seeds both entries have"
                   if len(set(seeds.values())) > 1 else "")})
    return out


def seed_counts(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Distinct seeds per entry, in the records' order."""
    return {k: len(v) for k, v in _per_entry(records, lambda r: r.get("seed")).items()}


def audit(table: dict[str, dict[str, Any]], records: Sequence[dict[str, Any]], *,
          schedule: str = "constant", decays: dict[str, str] | None = None
          ) -> dict[str, Any]:
    """The audit of entries `table` (label -> {"lr", "source", "tuned", "untuned",
    "trials", "steps_per_trial", "budget", "edge", "space", "values"}) and their runs
    `records`: {"findings": [{"kind", "entries", "text"}], "budgets": {label: {"trials",
    "steps_per_trial", "budget"}}, "seeds": {label: n}, "undecided": [{"a", "b",
    "reasons"}] for each pair whose verdicts would not be fair}."""
    steps, seeds = _steps(records), seed_counts(records)
    undecided = []
    for a, b in combinations(table, 2):
        reasons = pair_reasons(a, b, table, steps)
        if reasons:
            undecided.append({"a": a, "b": b, "reasons": reasons})
    return {"findings": [_budget_finding(table), *_tuning_findings(table),
                         *_run_findings(steps, seeds, schedule, decays or {})],
            "budgets": {label: {k: t[k] for k in ("trials", "steps_per_trial", "budget")}
                        for label, t in table.items()},
            "seeds": seeds, "undecided": undecided}


def undecide(rows: Sequence[dict[str, Any]], found: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison objects `rows` with the verdicts the audit `found` unfair made
    "undecided" (with "reasons", and the test's own under "test_verdict"); "too few seeds"
    and "not reached" stay: they decide nothing either way."""
    why = {frozenset((u["a"], u["b"])): u["reasons"] for u in found.get("undecided", [])}
    out = []
    for row in rows:
        reasons = why.get(frozenset((row["a"], row["b"])))
        if reasons and row["verdict"] not in (TOO_FEW, NOT_REACHED, UNDECIDED):
            row = row | {"verdict": UNDECIDED, "test_verdict": row["verdict"],
                         "reasons": reasons}
        out.append(row)
    return out


def audit_lines(found: dict[str, Any]) -> list[str]:
    """The audit as the terminal prints it: one line per finding, then the undecided pairs."""
    lines = [f"audit: {f['text']}" for f in found.get("findings", [])]
    lines += [f"audit: {u['a']} vs {u['b']} undecided: {'; '.join(u['reasons'])}"
              for u in found.get("undecided", [])]
    return lines
