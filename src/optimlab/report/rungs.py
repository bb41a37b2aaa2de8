"""The rung diagram of a sweep with successive halving (`optimlab.lab.halving`): each grid
configuration's validation accuracy against steps, its line ending where it was pruned,
the configurations that reached the end highlighted, the rungs as dashed lines; and the
decisions as a table. Drawn from the store's runs and decisions, never trained: a chart
per optimizer on the interactive page (hover names each configuration), `rungs.png` when
PNGs are asked for or the page is static.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.analysis.records import family, member_steps
from optimlab.report import interactive
from optimlab.report.page import html_table, inline_png
from optimlab.report.table import hyperparameters_text


def rung_lines(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per optimizer, one line per configuration of its grid runs: {"label", "steps" and
    "acc" (validation accuracy, the mean over the seeds evaluated at each step; step 0
    left out for the log axis), "pruned_at" (the rung, None: it went on to its end),
    "diverged"}."""
    points: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        if "grid" in run["roles"]:
            hp = json.dumps(run["config"]["hyperparameters"], sort_keys=True)
            points.setdefault((family(run["config"]), hp), []).append(run)
    out: dict[str, list[dict[str, Any]]] = {}
    for (name, _), seeds in points.items():
        by_step: dict[int, list[float]] = {}
        for run in seeds:
            for p in run["curves"]:
                if p.split == "val" and p.metric == "acc" and p.step > 0:
                    by_step.setdefault(p.step, []).append(p.value)
        steps = sorted(by_step)
        out.setdefault(name, []).append({
            "label": hyperparameters_text(seeds[0]["config"]["hyperparameters"]),
            "steps": steps, "acc": [float(np.mean(by_step[s])) for s in steps],
            "pruned_at": seeds[0]["summary"].get("pruned_at"),
            "diverged": any(r["summary"]["diverged"] for r in seeds)})
    return out


def plot_rungs(lines: dict[str, list[dict[str, Any]]], rungs: list[int], path: Path) -> Path:
    """One panel per optimizer: pruned configurations thin and grey, ending at their rung
    (a cross); those that reached the end in colour; the rungs dashed."""
    from matplotlib.figure import Figure  # only to draw the PNG

    fig = Figure(figsize=(5.5 * len(lines), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(lines)))
    for ax, (name, configs) in zip(axes, lines.items(), strict=True):
        for rung in rungs:
            ax.axvline(rung, color="0.6", ls="--", lw=0.8)
        kept = 0
        for line in configs:
            acc = 100 * np.array(line["acc"])
            if line["pruned_at"] is None and not line["diverged"]:
                ax.plot(line["steps"], acc, lw=2.2, color=f"C{kept}", label=line["label"])
                kept += 1
            elif line["steps"]:
                ax.plot(line["steps"], acc, lw=0.8, color="0.55", alpha=0.7)
                ax.plot(line["steps"][-1:], acc[-1:], "x", ms=4, color="0.4")
        ax.set(xscale="log", xlabel="step (log)", ylabel="validation accuracy (%)",
               title=f"{name}: {len(configs)} configurations, {kept} to the end")
        ax.grid(alpha=0.3)
        if kept:
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)
    return path


def rung_figures(lines: dict[str, list[dict[str, Any]]], rungs: list[int]
                 ) -> list[dict[str, Any]]:
    """The diagram as plotly figures, one per optimizer, drawn as `plot_rungs` draws its
    panels."""
    figures = []
    for name, configs in lines.items():
        data: list[dict[str, Any]] = []
        kept = 0
        for line in configs:
            acc = interactive.rounded([100 * a for a in line["acc"]])
            survived = line["pruned_at"] is None and not line["diverged"]
            end = "diverged" if line["diverged"] else "reached the end" if survived else \
                f"pruned at step {line['pruned_at']}"
            color = interactive.COLORS[kept % len(interactive.COLORS)] if survived else "#8c8c8c"
            kept += survived
            data.append({
                "type": "scatter", "mode": "lines+markers", "x": line["steps"], "y": acc,
                "name": line["label"], "showlegend": survived,
                "line": {"color": color, "width": 2.2 if survived else 0.8},
                "opacity": 1 if survived else 0.7,
                # a cross where a pruned line ends
                "marker": {"size": [0] * (len(acc) - 1) + [0 if survived else 7],
                           "symbol": "x", "color": color},
                "hovertemplate": "step %{x}: %{y:.2f} %<extra>" + html.escape(
                    f"{line['label']} ({end})") + "</extra>"})
        figures.append({"data": data, "layout": {
            "title": {"text": html.escape(f"{name}: {len(configs)} configurations, {kept} "
                                          "to the end"), "font": {"size": 13}},
            "xaxis": {"type": "log", "title": {"text": "step (log)"}},
            "yaxis": {"title": {"text": "validation accuracy (%)"}},
            "shapes": [{"type": "line", "xref": "x", "yref": "paper", "x0": r, "x1": r,
                        "y0": 0, "y1": 1, "line": {"dash": "dash", "width": 1,
                                                   "color": "#999"}} for r in rungs],
            "margin": {"l": 55, "r": 10, "t": 40, "b": 45}}})
    return figures


NOTE = (
    "<p>Successive halving: at each rung (dashed) the configurations of each optimizer "
    "are ranked on validation (accuracy averaged over seeds, ties to the lower loss; a "
    "diverged one last; TPE's rounds of trials apart), the best ceil(n/η) go on and the "
    "rest stop there. Grey lines end where their configuration was pruned (×); the "
    "coloured ones reached the last step. "
    "Member-steps trained: {steps}. The decisions are in summary.json (\"rungs\").</p>")


def rung_rows(decisions: list[dict[str, Any]]) -> list[list[str]]:
    """Per rung and optimizer: how many went on of how many, and the first configuration
    with its validation accuracy: the best of the rank-1 ones, since TPE's rounds of trials
    are ranked apart (a grid has one)."""
    rows = []
    for rung in sorted({d["rung"] for d in decisions}):
        for name in dict.fromkeys(d["optimizer"] for d in decisions):
            at = [d for d in decisions if d["rung"] == rung and d["optimizer"] == name]
            if at:
                best = min((d for d in at if d["rank"] == 1), key=_standing)
                acc = "–" if best["val_acc"] is None else f"{best['val_acc']:.2%}"
                rows.append([str(rung), name, f"{sum(d['survives'] for d in at)} of {len(at)}",
                             hyperparameters_text(best["hyperparameters"]), acc])
    return rows


def _standing(decision: dict[str, Any]) -> tuple[bool, float, float]:
    """The sort key of rank-1 configurations of separate brackets: accuracy down, loss up."""
    acc, loss = decision["val_acc"], decision["val_loss"]
    return acc is None, -(acc or 0.0), loss if loss is not None else math.inf


def rungs_section(runs: list[dict[str, Any]], decisions: list[dict[str, Any]], out: Path,
                  *, png: bool, interactive_page: bool) -> list[tuple[str, str]]:
    """The page's section on successive halving (none without decisions): the interactive
    charts on an interactive page, `rungs.png` drawn with `png`."""
    if not decisions:
        return []
    steps = sorted({d["rung"] for d in decisions})
    lines = rung_lines(runs)
    charts = "".join(interactive.figure_div(f"rungs-{i}", figure) for i, figure in
                     enumerate(rung_figures(lines, steps))) if interactive_page else ""
    if charts:
        charts = f'<div class="charts">{charts}</div>'
    if png:
        charts += inline_png(plot_rungs(lines, steps, out / "rungs.png"), "rung diagram")
    steps_taken = member_steps([r["summary"] for r in runs])
    body = (NOTE.format(steps=html.escape(f"{steps_taken:,}")) + charts
            + html_table(("rung", "optimizer", "kept", "first", "its val acc"),
                         rung_rows(decisions)))
    return [("Successive halving: rung diagram", body)]
