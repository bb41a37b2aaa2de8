"""A suite's report.html and profiles.png, drawn from its suite.json alone (never trains).

The page: the performance profiles; per workload the median steps to the validation
target; per workload the ranking over training (a chart of each optimizer's rank at each
evaluation, the evaluations where the order changed, and the pairs whose final order an
earlier evaluation reversed); per workload the paired comparisons; the lecture's two
claims about problem size with their tests; the failed workloads with their errors. With
plotly (the `report` extra) the charts are interactive, drawn by the page script of
`optimlab.report.interactive`; without it, profiles.png and the tables.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from optimlab.analysis.records import DamagedRecords, read_json
from optimlab.report import interactive
from optimlab.report.claims import Claim
from optimlab.report.page import claims_html, html_table, inline_png, write_page
from optimlab.report.profiles import write as write_profiles
from optimlab.report.table import COMPARISON_COLUMNS, comparison_rows, comparisons_caption

TITLE = "optimlab suite"
CLAIMS_RULE = (
    "<p>Steps to target as a fraction of each workload's budget (a run that missed counts at "
    "the budget), pooled over the workloads of a half and paired by (workload, seed); each "
    "claim's paired sign-flip tests at level α, without correction (see docs/suite.md). "
    "<i>too few seeds</i>: the pairs cannot reach α whatever they show.</p>")


def _finished(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in summary["workloads"] if w["status"] == "finished"]


def _optimizers(summary: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(o for w in _finished(summary) for o in w["optimizers"]))


def _steps_cell(r: dict[str, Any], budget: int) -> str:
    reached = sum(s is not None for s in r["steps_to_target"])
    median = r["median_steps_to_target"]
    text = f"not reached in {budget}" if median is None else f"{median:.0f} of {budget}"
    return f"{text} ({reached}/{len(r['steps_to_target'])} seeds reached)"


def steps_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Per finished workload, smallest first: its size, target and budget, and each
    optimizer's median steps to target (seeds that reached it, of the budget)."""
    names = _optimizers(summary)
    return [[w["name"], f"{w['parameters']:,}", f"{w['target_acc']:.0%}", str(w["seeds"]),
             *(_steps_cell(w["optimizers"][o], w["steps"]) if o in w["optimizers"] else "–"
               for o in names)] for w in _finished(summary)]


def order_text(checkpoint: dict[str, Any]) -> str:
    """"adam > rmsprop = momentum > sgd": best first, ties joined by =."""
    groups: dict[int, list[str]] = {}
    for o in checkpoint["order"]:
        groups.setdefault(checkpoint["rank"][o], []).append(o)
    return " > ".join(" = ".join(g) for _, g in sorted(groups.items()))


def changes(checkpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first checkpoint and every one whose order differs from the one before."""
    return [c for i, c in enumerate(checkpoints)
            if i == 0 or order_text(c) != order_text(checkpoints[i - 1])]


def _accuracy(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def flips_text(ranking: dict[str, Any]) -> str:
    """One sentence per flipped pair, or that the final order held."""
    if not ranking["flips"]:
        return "No flip: no pair ordered at the last evaluation was ever ordered the other way."
    return " ".join(f"{f['behind']} was ahead of {f['ahead']} at step"
                    f"{'s' if len(f['steps']) > 1 else ''} "
                    f"{', '.join(str(s) for s in f['steps'])}; {f['ahead']} is ahead at the end."
                    for f in ranking["flips"])


def _ranking_html(w: dict[str, Any], chart: bool) -> str:
    ranking = w["ranking_over_training"]
    names = list(w["optimizers"])
    rows = [[str(c["step"]), order_text(c), *(_accuracy(c["value"].get(o)) for o in names)]
            for c in changes(ranking["checkpoints"])]
    figure = interactive.figure_div(f"ranking-{w['folder']}", ranking_figure(w)) if chart \
        else ""
    return (f"<h3>{html.escape(w['name'])}</h3>{figure}"
            f"<p>{html.escape(flips_text(ranking))}</p>"
            + html_table(("step", "ranking (best first)",
                          *(f"{o}: median val acc" for o in names)), rows))


def _rankings_html(summary: dict[str, Any], chart: bool) -> str:
    done = _finished(summary)
    # a suite.json written before rankings over training were recorded has none to show
    ranked = [w for w in done if "ranking_over_training" in w]
    if not ranked:
        return ("<p>not recorded: no finished workload has its ranking over training (run "
                "the suite again into this folder: finished runs are kept)</p>")
    return (f"<p>Ranked by the {html.escape(ranked[0]['ranking_over_training']['measure'])}; "
            "ties share a rank. A description, not a test: a flip says that the medians' "
            "order changed, not that either order is significant. Each table lists the first "
            "evaluation and those where the order changed.</p>"
            + "".join(_ranking_html(w, chart) for w in ranked))


def ranking_figure(w: dict[str, Any]) -> dict[str, Any]:
    """Each optimizer's rank at each evaluation of workload `w` (1 at the top), its median
    validation accuracy on hover."""
    checkpoints = w["ranking_over_training"]["checkpoints"]
    steps = [c["step"] for c in checkpoints]
    data = []
    for i, o in enumerate(w["optimizers"]):
        data.append({"type": "scatter", "mode": "lines+markers", "name": o,
                     "x": steps, "y": [c["rank"][o] for c in checkpoints],
                     "customdata": [_accuracy(c["value"].get(o)) for c in checkpoints],
                     "line": {"color": interactive.COLORS[i % len(interactive.COLORS)],
                              "shape": "hv"},
                     "hovertemplate": "step %{x}: rank %{y}, median val acc %{customdata}"
                                      f"<extra>{o}</extra>"})
    return {"data": data, "layout": {
        "title": {"text": f"{w['name']}: rank by median validation accuracy",
                  "font": {"size": 13}},
        "xaxis": {"title": {"text": "step"}},
        "yaxis": {"title": {"text": "rank (1: best)"}, "autorange": "reversed", "dtick": 1},
        "margin": {"l": 55, "r": 10, "b": 45},
        "legend": {"font": {"size": 10}, "orientation": "h", "y": -0.22}}}


def profiles_figure(summary: dict[str, Any]) -> dict[str, Any]:
    """The profiles as step functions on a log τ axis (as profiles.png), the score's right
    end τ_max dashed."""
    prof = summary["profiles"]
    taus = prof["tau"]
    right = max(taus) * 1.15
    data = [{"type": "scatter", "mode": "lines", "name": f"{o} (score {prof['score'][o]:.2f})",
             "x": [*taus, right], "y": [*fractions, fractions[-1]],
             "line": {"shape": "hv", "width": 2,
                      "color": interactive.COLORS[i % len(interactive.COLORS)]},
             "hovertemplate": "τ = %{x:.3g}: %{y:.0%} of workloads<extra>" + o + "</extra>"}
            for i, (o, fractions) in enumerate(prof["fraction"].items())]
    tau_max = {"type": "line", "xref": "x", "yref": "paper", "x0": prof["tau_max"],
               "x1": prof["tau_max"], "y0": 0, "y1": 1,
               "line": {"dash": "dash", "color": "#999", "width": 1}}
    return {"data": data, "layout": {
        "title": {"text": "performance profiles (median over seeds)", "font": {"size": 13}},
        "xaxis": {"type": "log", "title": {"text": "τ: steps to target ÷ the best "
                                                   "optimizer's (log)"}},
        "yaxis": {"title": {"text": f"share of the {len(prof['ratios'])} workloads reached "
                                    "within τ"}, "range": [-0.03, 1.03], "tickformat": ".0%"},
        "shapes": [tau_max], "margin": {"l": 60, "r": 10, "b": 45},
        "legend": {"font": {"size": 10}, "orientation": "h", "y": -0.22}}}


def score_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Per optimizer: its score, the share of workloads it was fastest on (ρ(1)) and the
    share it reached at all (ρ at the largest τ)."""
    prof = summary["profiles"]
    return [[o, f"{prof['score'][o]:.2f}", f"{fractions[0]:.0%}", f"{fractions[-1]:.0%}"]
            for o, fractions in prof["fraction"].items()]


def _profiles_html(summary: dict[str, Any], png: Path, chart: bool) -> str:
    figure = (interactive.figure_div("profiles", profiles_figure(summary)) if chart
              else inline_png(png, "performance profiles"))
    prof = summary["profiles"]
    return (f"<p>Measure: {html.escape(prof['measure'])}. A target not reached never counts."
            f"</p>{figure}" + html_table(
                ("optimizer", f"score (mean ρ over τ in [1, {prof['tau_max']:g}])",
                 "fastest on", "reached at all"), score_rows(summary)))


def _test_line(t: dict[str, Any]) -> str:
    ci = "" if t["ci"] is None else " [{:.3g}, {:.3g}]".format(*t["ci"])
    diff = "—" if t["difference"] is None else f"{t['difference']:+.3g}"
    p = "—" if t["p"] is None else f"{t['p']:.3g}"
    need = f"; needs {t['seeds_needed']} pairs" if t["verdict"] == "too few seeds" else ""
    return (f"{t['a']} vs {t['b']} on {', '.join(t['workloads'])}: difference {diff}{ci} of "
            f"the budget, p = {p}, {t['n']} (workload, seed) pairs, {t['test']}, "
            f"α = {t['alpha']:g}: {t['verdict']}{need}")


def claims(summary: dict[str, Any]) -> list[Claim]:
    """The size claims as the claims panel shows claims: verdict, why, each test."""
    return [Claim(c["claim"], c["verdict"], (c["why"], *(_test_line(t) for t in c["tests"])))
            for c in summary["claims"]]


def _comparisons_html(summary: dict[str, Any]) -> str:
    parts = []
    for w in _finished(summary):
        rows = w["comparisons"]
        parts.append(f"<h3>{html.escape(w['name'])}</h3>" + (
            f"<p>{html.escape(comparisons_caption(rows))}</p>"
            + html_table(COMPARISON_COLUMNS, comparison_rows(rows)) if rows
            else "<p>one optimizer: nothing to compare</p>"))
    return "".join(parts)


def tuning_html(summary: dict[str, Any]) -> str:
    """Whether the optimizers were tuned before they were compared, and each workload's
    audit of it (budgets, and the pairs it left undecided)."""
    trials = summary["settings"].get("tune_trials")
    head = (f"<p>Each optimizer was tuned on every workload by {trials} random-search trials "
            "over its declared search space, selected on validation: equal budgets.</p>"
            if trials else "<p>Not tuned: each optimizer ran at compare's η, the same fixed "
            "default as <code>optimlab compare</code> (<code>--tune-trials N</code> tunes "
            "them with equal budgets).</p>")
    rows = [[w["name"], w["audit"]["findings"][0]["text"], "; ".join(
        f"{u['a']} vs {u['b']}" for u in w["audit"]["undecided"]) or "none"]
            for w in summary["workloads"] if w["status"] == "finished" and w.get("audit")]
    return head + (html_table(("workload", "budgets", "pairs left undecided"), rows)
                   if rows else "")


def _read(out: Path) -> dict[str, Any]:
    summary = read_json(out / "suite.json")
    keys = ("settings", "workloads", "profiles", "claims")
    if not isinstance(summary, dict) or any(k not in summary for k in keys):
        raise DamagedRecords(f"{out / 'suite.json'} is damaged: expected an object with "
                             f"{', '.join(keys)}")
    return summary


def render(out_dir: str | Path) -> Path:
    """Rewrite profiles.png and report.html of a suite folder; report.html's path."""
    out = Path(out_dir)
    summary = _read(out)
    png = write_profiles(summary, out / "profiles.png")
    chart = interactive.available()
    names = _optimizers(summary)
    failed = [[w["name"], w["error"]] for w in summary["workloads"]
              if w["status"] != "finished"]
    sections = [
        ("Performance profiles", _profiles_html(summary, png, chart)),
        ("Median steps to the validation target (of the budget; a seed that missed counts "
         "as the slowest)",
         html_table(("workload", "parameters", "target (val acc)", "seeds", *names),
                    steps_rows(summary))),
        ("Ranking over training", _rankings_html(summary, chart)),
        ("Tuning", tuning_html(summary)),
        ("Paired comparisons per workload", _comparisons_html(summary)),
        ("The lecture's claims about problem size", claims_html(claims(summary), CLAIMS_RULE)),
        *([("Failed workloads", html_table(("workload", "error"), failed))] if failed else []),
        ("Settings", html_table(("setting", "value"), sorted(
            (k, str(v)) for k, v in summary["settings"].items())))]
    if not chart:
        return write_page(out / "report.html", title=TITLE, note=interactive.NO_PLOTLY,
                          sections=sections)
    return write_page(out / "report.html", title=TITLE, sections=sections,
                      style=interactive.STYLE, scripts=interactive.page_scripts({}))
