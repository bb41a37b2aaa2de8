"""The comparison table: runs grouped by (optimizer, hyperparameters), mean ± std over seeds."""

from __future__ import annotations

import ast
import math
import re
import statistics
from typing import Any

from optimlab.analysis.records import family

COLUMNS = ("optimizer", "hyperparameters", "final test acc", "best test acc",
           "final train loss", "steps to target", "steps/s", "optimizer ms/step", "diverged")


def hyperparameters_text(hp: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(hp.items()))


def _states(label: str, key: str, value: Any) -> bool:
    """Whether an entry's label already gives `key=value` (e.g. the entry "sgd(lr=0.1)")."""
    m = re.search(rf"\b{re.escape(key)}\s*=\s*(\([^)]*\)|[^,()]+)", label)
    if m is None:
        return False
    try:
        given = ast.literal_eval(m.group(1).strip())
    except (ValueError, SyntaxError):
        return False
    as_list = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return bool(as_list(given) == as_list(value))


def series_label(name: str, hp: dict[str, Any]) -> str:
    """A legend entry: the run family, with the hyperparameters its label does not give."""
    rest = {k: v for k, v in hp.items() if not _states(name, k, v)}
    return f"{name} ({hyperparameters_text(rest)})" if rest else name


def group_runs(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Runs of the same optimizer entry (its label) and hyperparameters (i.e. differing by
    seed), in run order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        key = (family(r), hyperparameters_text(r["hyperparameters"]))
        groups.setdefault(key, []).append(r)
    return groups


def mean_std(values: list[Any]) -> tuple[float, float] | None:
    """Mean and sample standard deviation (0 for one value) of the non-null values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def pm_text(values: list[Any], scale: float = 1.0, fmt: str = ".1f", unit: str = "") -> str:
    """Mean ± std over seeds; one finite value has no spread, so none is shown."""
    ms = mean_std(values)
    if ms is None:
        return "–"
    if sum(v is not None and math.isfinite(v) for v in values) < 2:
        return f"{ms[0] * scale:{fmt}}{unit}"
    return f"{ms[0] * scale:{fmt}} ± {ms[1] * scale:{fmt}}{unit}"


def _time_to_target(runs: list[dict[str, Any]]) -> str:
    """Steps to the target (and examples seen), the measure rankings use, over the seeds
    that reached it; the optimizer's seconds for those steps beside it, as their cost."""
    if runs[0].get("target_acc") is None or all(r.get("final_val_acc") is None for r in runs):
        return "–"  # not asked for, or no validation split to measure it on
    hits = [r for r in runs if r.get("time_to_target_step") is not None]
    if not hits:
        return f"not reached (0/{len(runs)})"
    step = statistics.fmean(r["time_to_target_step"] for r in hits)
    text = f"{step:.0f} steps"
    if all(r.get("time_to_target_examples") is not None for r in hits):
        text += f", {statistics.fmean(r['time_to_target_examples'] for r in hits):.0f} examples"
    cost = [r.get("time_to_target_optimizer_s") for r in hits]
    if all(c is not None for c in cost):
        text += f"; optimizer {statistics.fmean(float(c) for c in cost if c is not None):.3g} s"
    return f"{text} ({len(hits)}/{len(runs)})"


def _diverged(runs: list[dict[str, Any]]) -> str:
    steps = [str(r["diverged_step"]) for r in runs if r["diverged"]]
    text = f"{len(steps)}/{len(runs)}"
    return f"{text} (step {', '.join(steps)})" if steps else text


def _column(runs: list[dict[str, Any]]) -> Any:
    return lambda key: [r[key] for r in runs]


def table_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row of strings per (optimizer, hyperparameters), in COLUMNS order."""
    rows = []
    for (optimizer, hp), runs in group_runs(records).items():
        col = _column(runs)
        rows.append([
            optimizer, hp,
            pm_text(col("final_test_acc"), 100, unit=" %"),
            pm_text(col("best_test_acc"), 100, unit=" %"),
            pm_text(col("final_train_loss"), fmt=".3g"),
            _time_to_target(runs),
            pm_text(col("steps_per_s"), fmt=".0f"),
            pm_text(col("optimizer_ms_per_step"), fmt=".3f"),
            _diverged(runs),
        ])
    return rows


COMPARISON_COLUMNS = ("a vs b", "measure", "difference [interval]", "p (Holm)", "seeds",
                      "verdict")


def _number_or_dash(x: float | None, form: str) -> str:
    return "—" if x is None else format(x, form)


def comparisons_caption(rows: list[dict[str, Any]]) -> str:
    """How the comparisons were decided: the test, alpha and the interval."""
    return (f"paired sign-flip permutation test, α = {rows[0]['alpha']:g}, Holm across each "
            f"pair's measures; {rows[0]['ci_level']:.0%} t-interval; time to target in steps")


def comparison_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One row of strings per comparison object, in COMPARISON_COLUMNS order."""
    out = []
    for r in rows:
        ci = "" if r["ci"] is None else " [{:.3g}, {:.3g}]".format(*r["ci"])
        p = f"{_number_or_dash(r['p'], '.3g')} ({_number_or_dash(r['p_holm'], '.3g')})"
        need = (f" (needs {r['seeds_needed']})" if r["verdict"] == "too few seeds" else
                f" (the test: {r['test_verdict']}; see the audit)" if "test_verdict" in r
                else "")
        out.append([f"{r['a']} vs {r['b']}", r["measure"],
                    _number_or_dash(r["difference"], "+.3g") + ci, p, str(r["n"]),
                    r["verdict"] + need])
    return out
