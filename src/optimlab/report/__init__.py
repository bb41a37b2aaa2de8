"""Figures, tables and the HTML report, made from saved records only (the report never trains).

`render(out_dir)` rebuilds `curves.png` and `report.html` of a compare folder (see
`optimlab.lab.compare` for its files). With plotly installed (the `report` extra),
report.html is interactive (see `optimlab.report.interactive`); without it, the static
figures with a one-line note. Both carry the claims panel (`optimlab.report.claims`).

Extra figures: when `out_dir/diagnostics.json` exists (the lab writes the callbacks'
results there), `render` embeds every PNG `optimlab.report.diagnostics.render` draws from
its records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optimlab.analysis.comparisons import read_comparisons
from optimlab.analysis.stats import ALPHA
from optimlab.report import interactive
from optimlab.report.claims import lecture_claims
from optimlab.report.page import (
    CLAIMS_TITLE,
    audit_section,
    claims_html,
    config_sections,
    html_table,
    inline_png,
    write_page,
)
from optimlab.report.records import load_compare, read_json
from optimlab.report.table import (
    COLUMNS,
    COMPARISON_COLUMNS,
    comparison_rows,
    comparisons_caption,
    table_rows,
)

RUN_COLUMNS = ("run", "steps", "final test acc", "best test acc", "final train loss",
               "train s", "steps/s", "optimizer ms/step", "steps to target", "diverged at")


def _fmt(x: Any, fmt: str) -> str:
    return "–" if x is None else f"{x:{fmt}}"


def _run_row(r: dict[str, Any]) -> list[str]:
    ttt = (f"{r['time_to_target_step']:.1f}" if r.get("time_to_target_step") is not None
           else "not reached" if r.get("target_acc") is not None and
           r.get("final_val_acc") is not None else "–")
    return [r["run"], str(r["steps"]), _fmt(r["final_test_acc"], ".2%"),
            _fmt(r["best_test_acc"], ".2%"), _fmt(r["final_train_loss"], ".3g"),
            _fmt(r["train_seconds"], ".1f"), _fmt(r["steps_per_s"], ".0f"),
            _fmt(r["optimizer_ms_per_step"], ".3f"), ttt, _fmt(r["diverged_step"], "d")]


TUNING_COLUMNS = ("optimizer", "η used", "how", "tuned (range tried → chosen)", "budget",
                  "note")


def _tuned(meta: dict[str, Any]) -> bool:
    """compare --tune tuned at least one optimizer (config.json's "tuning")."""
    return any(t.get("source") == "tuned" or t.get("trials")
               for t in (meta.get("tuning") or {}).values())


def tuned_edges(meta: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The tuned η that lie on an edge of their grid, by label: {"sgd": {"lr": "high"}}."""
    return {name: t["edge"] for name, t in (meta.get("tuning") or {}).items()
            if t.get("source") == "tuned" and t.get("edge")}


def _searched(t: dict[str, Any]) -> str:
    """The keys tuned, each as lowest…highest tried → chosen (an earlier version's η grid)."""
    if "space" not in t:
        grid = t.get("grid") or []
        return f"η {min(grid):g}…{max(grid):g} ({len(grid)} values)" if grid else "–"
    return "; ".join(f"{'η' if k == 'lr' else k} {lo:g}…{hi:g} → {t['values'].get(k, 0):g}"
                     for k, (lo, hi) in t["space"].items()) or "–"


def tuning_rows(meta: dict[str, Any]) -> list[list[str]]:
    """What compare --tune chose per optimizer, its budget, and where it could not choose."""
    rows = []
    for name, t in (meta.get("tuning") or {}).items():
        edges = ", ".join(f"{'η' if k == 'lr' else k} on the {side} edge"
                          for k, side in sorted((t.get("edge") or {}).items()))
        note = ("every trial diverged: the η given or the default is used"
                if t.get("all_diverged") else f"{edges}: the best value may lie beyond"
                if edges else "")
        budget = (f"{t['trials']} × {t['steps_per_trial']} steps" if t.get("trials")
                  else "0 (not tuned)" if "trials" in t else "–")
        rows.append([name, f"{t['lr']:g}", {"tuned": "tuned on validation", "given":
                     "given", "default": "lab default"}.get(t.get("source"), "?"),
                     _searched(t), budget, note])
    return rows


def _comparisons_section(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Every pair of entries on each measure (summary.json's), or nothing without pairs."""
    if not rows:
        return []
    return [(f"Paired comparisons ({comparisons_caption(rows)})",
             html_table(COMPARISON_COLUMNS, comparison_rows(rows)))]


def render(out_dir: str | Path) -> Path:
    """Rewrite curves.png and report.html of a compare folder; returns report.html's path."""
    out = Path(out_dir)
    meta, stored, curves = load_compare(out)
    records = stored["runs"]
    diagnostics = read_json(out / "diagnostics.json") if (out / "diagnostics.json").is_file() \
        else []
    # matplotlib only here: the package's other pages (a sweep's) import this one
    from optimlab.report import diagnostics as step_sizes
    from optimlab.report.plots import plot_curves

    png = plot_curves(records, curves, out / "curves.png")
    figures = [inline_png(png, "training curves")]
    figures += [inline_png(p, p.stem) for p in step_sizes.render(diagnostics, out)]
    compared = read_comparisons(out, stored)
    found = stored.get("audit")
    claims = lecture_claims(records, tuned=_tuned(meta), edges=tuned_edges(meta),
                            diagnostics=diagnostics, audit=found,
                            alpha=compared[0]["alpha"] if compared else ALPHA)
    summary = ("Summary (mean ± std over seeds)", html_table(COLUMNS, table_rows(records)))
    tuning = [("Tuning (compare --tune)", html_table(TUNING_COLUMNS, tuning_rows(meta)))
              ] if meta.get("tuning") else []
    verdicts = [*tuning, *audit_section(found), *_comparisons_section(compared),
                (CLAIMS_TITLE, claims_html(claims))]
    rest = [("Runs", html_table(RUN_COLUMNS, [_run_row(r) for r in records])),
            *config_sections(meta, records)]
    if not interactive.available():
        return write_page(out / "report.html", title="optimlab compare", note=interactive.NO_PLOTLY,
                          sections=[summary, ("Curves", "\n".join(figures)), *verdicts, *rest])
    charts, steps = interactive.compare_charts(records, curves)
    sections = [
        ("Summary (mean ± std over seeds; click a column to sort)",
         interactive.sortable_table(COLUMNS, table_rows(records))),
        ("Curves (mean over seeds, band: min…max; click a legend entry to hide it)",
         interactive.curves_section(charts, steps)),
        *verdicts,
        ("Static figures", "<details><summary>PNG figures (for papers)</summary>"
         + "\n".join(figures) + "</details>"),
        *rest]
    return write_page(out / "report.html", title="optimlab compare", sections=sections,
                      style=interactive.STYLE,
                      scripts=interactive.page_scripts({"curves": charts}))


__all__ = ["load_compare", "render"]
