"""The sweep report: report.html (and figures) from `DIR/sweep.sqlite` (never trains).

- η-sensitivity: final validation loss and accuracy against η (log axis), a line per
  optimizer (its other hyperparameters at the best configuration's values), the mean
  over seeds with a min..max band; diverged runs leave a gap;
- Adam's β₁×β₂ heatmap (when the grid varies them): the best final validation loss
  over η for each pair, as in the Adam paper's figure 4, annotated with that η;
- the best configurations' curves with seed bands (the compare report's figure);
- a table of the best configuration per optimizer, tuned against one-shot, saying which
  values lie on the edge of their grid;
- the claims panel (`optimlab.report.claims`);
- budget curves: each optimizer's expected best validation score over k random trials,
  with its bootstrap band (`optimlab.analysis.budget`, computed from the store, so that an
  older sweep's folder gets them too);
- with successive halving, the rung diagram and the decisions (`optimlab.report.rungs`).
The page is interactive (`optimlab.report.sweep_interactive`); the static PNGs of its
figures (`optimlab.report.sweep_figures`) are drawn when asked (`--png`), since matplotlib
costs a short sweep more than its training, and always on a page without the chart library.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.analysis.budget import budget_curves, from_summary
from optimlab.analysis.records import family, read_summary_file
from optimlab.analysis.selection import (
    best_per_optimizer,
    edges,
    final_value,
    grid_of,
    point_value,
)
from optimlab.analysis.store import read_meta, read_rungs, read_runs
from optimlab.report import interactive, rungs, sweep_interactive
from optimlab.report.claims import Claim, lecture_claims
from optimlab.report.page import (
    CLAIMS_TITLE,
    audit_section,
    claims_html,
    config_sections,
    html_table,
    write_page,
)
from optimlab.report.records import curves_of_store_runs
from optimlab.report.sweep_interactive import stats
from optimlab.report.table import hyperparameters_text, pm_text

# The PNGs a sweep's folder may hold (`optimlab.report.sweep_figures`, the rung diagram)
STATIC = ("lr_sensitivity.png", "adam_betas.png", "best_curves.png", "expected_best.png",
          "rungs.png")
NO_PNG = ("<p>Not drawn: <code>optimlab report DIR --png</code> (or <code>optimlab sweep "
          "--png</code>) writes them as PNG files and shows them here. Each chart above "
          "saves itself as a PNG from its camera button.</p>")
BEST_COLUMNS = ("optimizer", "best hyperparameters (on val)", "on the grid edge", "seeds",
                "tuned val acc", "tuned test acc", "one-shot hyperparameters",
                "one-shot val acc", "one-shot test acc")


def others_text(hp: dict[str, Any]) -> str:
    """The hyperparameters other than η, as text (the η-sensitivity line's identity)."""
    return hyperparameters_text({k: v for k, v in hp.items() if k != "lr"})


def _points(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per run at a grid point (the grid's, and the best point's re-runs under
    more seeds, which give its seed spread): optimizer, η, the others, seed, final val
    loss and acc."""
    out = []
    for run in runs:
        on_grid = {"grid", "tuned"} & set(run["roles"])
        if not on_grid or "lr" not in run["config"]["hyperparameters"]:
            continue
        s, hp = run["summary"], run["config"]["hyperparameters"]
        loss = None if s["diverged"] else final_value(run["curves"], "val", "loss")
        acc = None if s["diverged"] else s["final_val_acc"]
        out.append({"optimizer": family(s), "lr": hp["lr"], "others": others_text(hp), "hp": hp,
                    "betas": tuple(hp.get("betas", (0.9, 0.999))),
                    "seed": s["seed"], "loss": np.nan if loss is None else loss,
                    "acc": np.nan if acc is None else acc, "run": run["run"],
                    "curve": [(p.step, p.value) for p in run["curves"]
                              if p.split == "val" and p.metric == "acc"]})
    return out


# How the budget curves are made (optimlab.analysis.budget).
BUDGET_NOTE = (
    "<p>Expected best final validation score over k trials drawn at random without "
    "replacement from this sweep's N trials per optimizer (Dodge et al. 2019), k = 1…N; "
    "band: a {level:.0%} percentile bootstrap over the trials. A trial is one configuration "
    "(its score averaged over its seeds); the re-runs of a chosen point or of the defaults "
    "are not trials. A diverged run scores the worst: accuracy 0 (a loss: the sweep's "
    "largest). Trials: {trials}. The same numbers are in summary.json (its "
    "\"expected_best\" and \"budget\").</p>")


def _budget_section(curves: dict[str, Any] | None, interactive_page: bool) -> list[
        tuple[str, str]]:
    if curves is None:
        return []
    trials = ", ".join(f"{name} {n} ({curves['diverged'][name]} diverged runs)"
                       for name, n in curves["trials"].items())
    note = BUDGET_NOTE.format(level=curves["level"], trials=html.escape(trials))
    body = interactive.figure_div("budget", sweep_interactive.budget_figure(curves)) \
        if interactive_page else ""
    return [("Tuning budget: expected best validation score vs number of trials",
             note + body)]


def _pm(values: list[Any]) -> str:
    return pm_text(values, 100, unit="%")


def _same_config(runs: list[dict[str, Any]], name: str, hp: dict[str, Any],
                 role: str | None = None) -> list[dict[str, Any]]:
    """The runs (all seeds) of optimizer `name` with hyperparameters `hp` (and `role`)."""
    return [r for r in runs if family(r["config"]) == name and
            r["config"]["hyperparameters"] == hp and (role is None or role in r["roles"])]


def best_edges(runs: list[dict[str, Any]], best: dict[str, dict[str, Any]],
               meta: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per optimizer, the edges of its best point ({key: "low" | "high"}): those the sweep's
    own selection stored (a sampled range's edge is its band, `optimlab.lab.search`), or,
    for a store written before selections were kept, the lowest or highest of its grid."""
    stored = meta.get("selection") or {}
    out = {}
    for name, run in best.items():
        hp = run["config"]["hyperparameters"]
        chosen = stored.get(name) or {}
        out[name] = chosen["edge"] if chosen.get("hyperparameters") == hp else \
            edges(grid_of(runs, name), hp)
    return out


def _edges_text(hp: dict[str, Any], found: dict[str, str]) -> str:
    return ", ".join(f"{k}={point_value(hp, k):g} ({side})"
                     for k, side in sorted(found.items())) or "no"


def best_points(points: list[dict[str, Any]], best: dict[str, dict[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    """Per optimizer, its best configuration's grid point: η, the others, mean loss and acc."""
    out = {}
    for name, run in best.items():
        hp = run["config"]["hyperparameters"]
        mine = [p for p in points if p["optimizer"] == name and p["others"] == others_text(hp)
                and p["lr"] == hp.get("lr")]
        if mine:
            out[name] = {"lr": hp["lr"], "others": others_text(hp),
                         "loss": stats([p["loss"] for p in mine])[0],
                         "acc": stats([p["acc"] for p in mine])[0]}
    return out


def lr_lines(points: list[dict[str, Any]], best: dict[str, dict[str, Any]]
             ) -> dict[str, dict[float, list[float | None]]]:
    """For the claims: optimizer -> η -> final val accuracy per seed (None: diverged),
    along the η line through the optimizer's best configuration."""
    out: dict[str, dict[float, list[float | None]]] = {}
    for name, b in best_points(points, best).items():
        for p in points:
            if p["optimizer"] == name and p["others"] == b["others"]:
                acc = None if np.isnan(p["acc"]) else float(p["acc"])
                out.setdefault(name, {}).setdefault(p["lr"], []).append(acc)
    return out


def best_rows(runs: list[dict[str, Any]], best: dict[str, dict[str, Any]],
              edges_found: dict[str, dict[str, str]]
              ) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """The table of best configurations (`edges_found`: see `best_edges`), and the summary
    records of their runs."""
    rows, records = [], []
    for name, run in best.items():
        hp = run["config"]["hyperparameters"]
        tuned = [r["summary"] for r in _same_config(runs, name, hp)]
        shot = [r for r in runs if family(r["config"]) == name and "one-shot" in r["roles"]]
        shot_hp = hyperparameters_text(shot[0]["config"]["hyperparameters"]) if shot else "–"
        rows.append([name, hyperparameters_text(hp), _edges_text(hp, edges_found[name]),
                     str(len(tuned)),
                     _pm([s["final_val_acc"] for s in tuned]),
                     _pm([s["final_test_acc"] for s in tuned]), shot_hp,
                     _pm([r["summary"]["final_val_acc"] for r in shot]),
                     _pm([r["summary"]["final_test_acc"] for r in shot])])
        records += tuned
    for name in dict.fromkeys(family(r["config"]) for r in runs if "grid" in r["roles"]):
        if name not in best:
            rows.append([name, "every grid point diverged", "–", "0", *["–"] * 5])
    return rows, records


def load_sweep(out: Path, runs: list[dict[str, Any]] | None = None
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the store's finished runs, its meta); `runs`: those runs when already read."""
    runs, meta = read_runs(out) if runs is None else runs, read_meta(out)
    if not runs:
        raise ValueError(f"{out} holds no finished runs yet; run the sweep first")
    return runs, meta


def sweep_claims(runs: list[dict[str, Any]], points: list[dict[str, Any]],
                 best: dict[str, dict[str, Any]], best_records: list[dict[str, Any]],
                 edges_found: dict[str, dict[str, str]], audit: dict[str, Any] | None = None
                 ) -> list[Claim]:
    """The claims on the best configurations. A sweep tunes η wherever its grid holds
    several: the best point is selected on validation, whatever `select` says about
    re-runs; a best value on the edge of its grid leaves the comparisons undecided."""
    grids = {name: grid_of(runs, name) for name in best}
    tuned = any(len(g.get("lr", ())) > 1 for g in grids.values())
    return lecture_claims(best_records, tuned=tuned, edges=edges_found, audit=audit,
                          not_tuned="this sweep's grid holds one η per optimizer: η was "
                                    "not tuned (give --lr several values)",
                          lr_lines=lr_lines(points, best))


# What the best-configuration table's columns mean (one-shot runs exist with --select val).
COLUMNS_NOTE = (
    "<p><b>best hyperparameters</b>: the grid point with the best final validation accuracy; "
    "<b>on the grid edge</b>: a best value that is the lowest or highest of its grid (the "
    "best may lie beyond it; <code>--select val --extend-edges</code> widens the grid there); "
    "<b>tuned</b>: that point under every seed; <b>one-shot</b>: the optimizer's class "
    "defaults, untuned, under the same seeds (with <code>--select val</code>), the "
    "baseline tuning is measured against.</p>")
# What a run's roles say (optimlab.lab.sweep.ROLES); a run can have several.
ROLES_NOTE = (
    "<p><b>roles</b>: why a run exists. <b>grid</b>: a point of the grid (with <code>"
    "--select val</code> under seed 0 only); <b>tuned</b>: the best grid point re-run under "
    "every seed; <b>one-shot</b>: the class defaults under every seed. A run that is both a "
    "grid point and the best one's re-run under seed 0 has both roles.</p>")


def _interactive_figures(points: list[dict[str, Any]], best: dict[str, dict[str, Any]]
                         ) -> str:
    bp = best_points(points, best)
    # taller: a legend of many lines (an optimizer per setting of its others) sits below
    divs = [interactive.figure_div(f"lr-{key}", sweep_interactive.sensitivity_figure(
        points, bp, key)).replace('class="chart', 'class="chart tall') for key in ("loss", "acc")]
    heatmap = sweep_interactive.beta_heatmap(points)
    divs += [interactive.figure_div("betas", heatmap)] if heatmap else []
    for name, parcoords, curves in sweep_interactive.parallel_coordinates(points):
        divs += [interactive.figure_div(f"parcoords-{name}", parcoords).replace(
            'class="chart', 'class="chart wide'), interactive.figure_div(
            f"runcurves-{name}", curves).replace('class="chart', 'class="chart wide')]
    return f'<div class="charts">{"".join(divs)}</div>'


def render(out_dir: str | Path, runs: list[dict[str, Any]] | None = None, *,
           png: bool = False) -> Path:
    """Rewrite the sweep's report.html, and with `png` its static figures; returns
    report.html's path. `runs`: the store's finished runs (`Store.runs`) when the caller has
    just read them (the sweep, writing its outputs: decoding every run's curves again would
    cost time in proportion to their points, docs/performance.md, 'Behind the code'). A page
    without the chart library always gets the PNGs; figures not drawn are removed, so that
    none of an earlier state of the sweep is left beside the page."""
    out = Path(out_dir)
    runs, meta = load_sweep(out, runs)
    points = _points(runs)
    best = best_per_optimizer([r for r in runs if "grid" in r["roles"]])
    edges_found = best_edges(runs, best, meta)
    rows, best_records = best_rows(runs, best, edges_found)
    curves = curves_of_store_runs(runs)
    summary = out / "summary.json"
    stored = read_summary_file(summary) if summary.is_file() else {}
    # the sweep stored its budget curves (a bootstrap); a folder of an earlier version did not
    by_budget = from_summary(stored) if "expected_best" in stored else budget_curves(runs)
    interactive_page = interactive.available()
    png = png or not interactive_page
    figures: list[str] = []
    for name in STATIC:  # what this call draws is written afresh below
        (out / name).unlink(missing_ok=True)
    if png:
        from optimlab.report import sweep_figures  # matplotlib: only to draw the PNGs

        figures = sweep_figures.drawn(out, points, best, best_records, curves, by_budget)
    found = stored.get("audit")
    claims = sweep_claims(runs, points, best, best_records, edges_found, found)
    halving = rungs.rungs_section(runs, read_rungs(out), out, png=png,
                                  interactive_page=interactive_page)
    best_table = ("Best configuration per optimizer (selected on validation; mean ± std "
                  "over seeds)", COLUMNS_NOTE + html_table(BEST_COLUMNS, rows))
    verdicts = [*audit_section(found), (CLAIMS_TITLE, claims_html(claims))]
    rest = [("Runs", ROLES_NOTE + html_table(("run", "roles", "final val acc",
                                              "final test acc", "diverged at"),
                                             [_run_row(r) for r in runs])),
            *config_sections(meta, [r["summary"] for r in runs])]
    if not interactive_page:
        return write_page(out / "report.html", title="optimlab sweep", note=interactive.NO_PLOTLY,
                          sections=[best_table, *halving, ("Figures", "\n".join(figures)),
                                    *_budget_section(by_budget, False), *verdicts, *rest])
    charts, steps = interactive.compare_charts(best_records, curves, prefix="best-")
    static = ("<details><summary>PNG figures (for papers)</summary>" + "\n".join(figures)
              + "</details>") if figures else NO_PNG
    sections = [
        (best_table[0], COLUMNS_NOTE + interactive.sortable_table(BEST_COLUMNS, rows)),
        *halving,
        ("Sensitivity (hover for the numbers; click a legend entry to show or hide a line)",
         _interactive_figures(points, best)),
        ("Best configurations' curves (mean over seeds, band: min…max)",
         interactive.curves_section(charts, steps) if charts else "<p>no finished best run</p>"),
        *_budget_section(by_budget, True),
        *verdicts,
        ("Static figures", static),
        *rest]
    return write_page(out / "report.html", title="optimlab sweep", sections=sections,
                      style=interactive.STYLE,
                      scripts=interactive.page_scripts({"curves": charts}))


def _run_row(run: dict[str, Any]) -> list[str]:
    s = run["summary"]
    pct = lambda x: "–" if x is None else f"{x:.2%}"  # noqa: E731
    return [run["run"], ",".join(run["roles"]), pct(s["final_val_acc"]),
            pct(s["final_test_acc"]), "–" if s["diverged_step"] is None else
            str(s["diverged_step"])]
