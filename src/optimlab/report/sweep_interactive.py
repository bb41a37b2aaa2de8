"""The sweep report's interactive figures, as plotly figure dicts (drawn by the page script).

- η-sensitivity: final validation loss and accuracy against η, one line per optimizer and
  setting of its other hyperparameters (the best setting shown, the others one legend
  click away), the seeds' min..max as error bars, the grid's edges as dashed lines and
  the best η of each optimizer as a star in its line's colour (hollow, and said so in the
  legend, when it lies on the edge of the grid);
- Adam's β₁×β₂ heatmap: the best final validation loss over η per pair, η on hover;
- parallel coordinates per optimizer whose grid varies more than one hyperparameter, drawn
  with scatter lines (plotly's parcoords trace is not in the embedded cartesian bundle),
  coloured by validation accuracy, linked to every run's validation curve: a click on a
  run in either figure draws it highlighted in both.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from optimlab.analysis.selection import edges
from optimlab.report.interactive import COLORS, rounded


def stats(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean, min and max of the finite values (NaN: a diverged run); NaN when none is."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, math.nan
    return statistics.fmean(finite), min(finite), max(finite)


def lines(points: list[dict[str, Any]]) -> dict[tuple[str, str], dict[float, list[dict]]]:
    """(optimizer, the other hyperparameters as text) -> η -> the points (one per seed)."""
    out: dict[tuple[str, str], dict[float, list[dict]]] = {}
    for p in points:
        out.setdefault((p["optimizer"], p["others"]), {}).setdefault(p["lr"], []).append(p)
    return out


def on_edge(values: Sequence[float], value: float) -> bool:
    """`value` is the lowest or highest of the grid of η `values` (see `lab.grid.edges`)."""
    return "lr" in edges({"lr": tuple(set(values))}, {"lr": value})


def adam_pairs(points: list[dict[str, Any]]) -> dict[tuple[float, float], dict[float, list[float]]]:
    """Adam's final validation losses by (β₁, β₂), then by η (one per seed)."""
    by_pair: dict[tuple[float, float], dict[float, list[float]]] = {}
    for p in points:
        if p["optimizer"] == "adam":
            by_pair.setdefault(p["betas"], {}).setdefault(p["lr"], []).append(p["loss"])
    return by_pair


def sensitivity_figure(points: list[dict[str, Any]], best: dict[str, dict[str, Any]],
                       key: str) -> dict[str, Any]:
    """Final validation `key` ("loss" or "acc") against η (see the module docstring)."""
    data: list[dict[str, Any]] = []
    scale = 100.0 if key == "acc" else 1.0
    best_others = {name: run["others"] for name, run in best.items()}
    names = list(dict.fromkeys(p["optimizer"] for p in points))
    for (name, others), per_lr in lines(points).items():
        lrs = sorted(per_lr)
        spread = [stats([p[key] * scale for p in per_lr[lr]]) for lr in lrs]
        mean, lo, hi = ([s[i] for s in spread] for i in range(3))
        color = COLORS[names.index(name) % len(COLORS)]
        label = f"{name} ({others})" if others else name
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": label, "legendgroup": label,
            "x": lrs, "y": rounded(mean), "line": {"color": color},
            "visible": True if best_others.get(name, others) == others else "legendonly",
            "error_y": {"type": "data", "symmetric": False,
                        "array": rounded([h - m for h, m in zip(hi, mean)]),
                        "arrayminus": rounded([m - low for m, low in zip(mean, lo)])},
            "customdata": [[len(per_lr[lr]), sum(math.isnan(p[key]) for p in per_lr[lr])]
                           for lr in lrs],
            "hovertemplate": "η=%{x:.3g}: %{y:.4g} (%{customdata[0]} seeds, "
                             "%{customdata[1]} diverged)<extra>" + label + "</extra>"})
    for name, run in best.items():
        grid = [p["lr"] for p in points if p["optimizer"] == name]
        edge = on_edge(grid, run["lr"])
        color = COLORS[names.index(name) % len(COLORS)]
        data.append({"type": "scatter", "mode": "markers", "x": [run["lr"]],
                     "y": rounded([run[key] * scale]), "name": f"{name}: best η"
                     + (" (on the grid edge)" if edge else ""), "legendgroup": name + "-best",
                     "marker": {"symbol": "star-open" if edge else "star", "size": 14,
                                "color": color, "line": {"width": 2 if edge else 1,
                                                         "color": color if edge else "#222"}}})
    all_lr = [p["lr"] for p in points]
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0,
               "y1": 1, "line": {"dash": "dash", "color": "#999", "width": 1}}
              for x in {min(all_lr), max(all_lr)}] if all_lr else []
    title = "final validation " + ("accuracy (%)" if key == "acc" else "loss")
    return {"data": data, "layout": {
        "title": {"text": title + " against η (dashed: grid edges)", "font": {"size": 13}},
        "xaxis": {"type": "log", "title": {"text": "learning rate η"}},
        "yaxis": {"title": {"text": title}, "type": "log" if key == "loss" else "linear"},
        "shapes": shapes, "margin": {"l": 55, "r": 10, "t": 40, "b": 45},
        "legend": {"font": {"size": 10}, "orientation": "h", "y": -0.3, "yanchor": "top"}}}


def beta_heatmap(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Adam's best final validation loss over η per (β₁, β₂); None for a single pair."""
    by_pair = adam_pairs(points)
    if len(by_pair) < 2:
        return None
    b1s, b2s = sorted({b[0] for b in by_pair}), sorted({b[1] for b in by_pair})
    z: list[list[float | None]] = [[None] * len(b2s) for _ in b1s]
    text: list[list[str]] = [["no finished run"] * len(b2s) for _ in b1s]
    for (b1, b2), per_lr in by_pair.items():
        means = {lr: stats(v)[0] for lr, v in per_lr.items()}
        finite = {lr: m for lr, m in means.items() if math.isfinite(m)}
        i, j = b1s.index(b1), b2s.index(b2)
        if finite:
            lr = min(finite, key=finite.__getitem__)
            z[i][j] = rounded([finite[lr]])[0]
            text[i][j] = f"best loss {finite[lr]:.4g} at η={lr:g}"
        else:
            text[i][j] = "every η diverged"
    return {"data": [{"type": "heatmap", "z": z, "x": [f"{b:g}" for b in b2s],
                      "y": [f"{b:g}" for b in b1s], "text": text, "colorscale": "Viridis",
                      "reversescale": True, "texttemplate": "%{z:.3g}",
                      "hovertemplate": "β₁=%{y}, β₂=%{x}: %{text}<extra></extra>"}],
            "layout": {"title": {"text": "Adam: best final validation loss over η",
                                 "font": {"size": 13}},
                       "xaxis": {"title": {"text": "β₂"}, "type": "category"},
                       "yaxis": {"title": {"text": "β₁"}, "type": "category"},
                       "margin": {"l": 55, "r": 10, "t": 40, "b": 45}}}


def _varying(rows: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for r in rows for k in r["hp"]})
    return [k for k in keys if len({repr(r["hp"].get(k)) for r in rows}) > 1]


def _columns(rows: list[dict[str, Any]], key: str) -> list[tuple[str, list[float]]]:
    """A hyperparameter as parcoords axes (a pair such as betas gives one axis each)."""
    values = [r["hp"].get(key) for r in rows]
    if all(isinstance(v, (list, tuple)) for v in values):
        return [(f"{key}[{i}]", [float(v[i]) for v in values])
                for i in range(len(values[0]))]
    return [(key, [float(v) for v in values])]


# Viridis at 8 evenly spaced points: a parallel-coordinates line (and its curve) takes the
# colour of its run's accuracy bin (a plotly line trace has one colour; 8 traces stay cheap
# at 1,000 runs).
VIRIDIS = ("#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39",
           "#fde725")


def _axes(kept: list[dict[str, Any]], varying: list[str]) -> list[tuple[str, list[float]]]:
    """The axes of the parallel coordinates: each varying hyperparameter (log10 where its
    values span more than a factor 100, or for η), then the validation accuracy."""
    axes = []
    for key in varying:
        for label, values in _columns(kept, key):
            log = key == "lr" or (min(values) > 0 and max(values) / min(values) > 100)
            axes.append((f"log10 {label}" if log else label,
                         [math.log10(v) for v in values] if log else values))
    return axes + [("val acc (%)", [100 * r["acc"] for r in kept])]


def _unit(values: list[float]) -> list[float]:
    """Values mapped onto [0, 1] by their range (0.5 for a constant axis)."""
    lo, hi = min(values), max(values)
    return [0.5 if hi == lo else (v - lo) / (hi - lo) for v in values]


def _bins(acc: list[float]) -> list[int]:
    """Each run's accuracy bin, 0 (worst) to len(VIRIDIS) - 1: its lines' colour."""
    lo, hi = min(acc), max(acc)
    return [min(len(VIRIDIS) - 1, int((a - lo) / (hi - lo) * len(VIRIDIS))) if hi > lo else 0
            for a in acc]


def _binned_lines(bins: list[int], xs: list[list[float]], ys: list[list[float]]
                  ) -> list[dict[str, Any]]:
    """One line trace per accuracy bin (worst drawn first) holding its runs' polylines
    (run i: xs[i], ys[i]), each vertex tagged with its run's index (`customdata`, None
    between runs) so that a click finds the run; `meta` "runs" marks them for the page
    script (report.js, `linkFigures`)."""
    data = []
    for b, color in enumerate(VIRIDIS):
        runs = [i for i, rb in enumerate(bins) if rb == b]
        if runs:
            data.append({"type": "scatter", "mode": "lines", "hoverinfo": "none",
                         "showlegend": False, "line": {"color": color, "width": 1},
                         "opacity": 0.6, "meta": "runs",
                         "x": [x for i in runs for x in [*xs[i], None]],
                         "y": [y for i in runs for y in [*rounded(ys[i], 4), None]],
                         "customdata": [c for i in runs for c in [*[i] * len(xs[i]), None]]})
    return data


# The trace a click fills with the selected run's line, drawn over the others.
SELECTED = {"type": "scatter", "mode": "lines+markers", "name": "selected run", "x": [],
            "y": [], "showlegend": False, "hoverinfo": "skip",
            "line": {"color": "#d62728", "width": 3}, "marker": {"size": 5}}


def parallel_figure(name: str, axes: list[tuple[str, list[float]]], dropped: int,
                    runs: list[str]) -> dict[str, Any]:
    """Parallel coordinates drawn with scatter lines: axis k at x = k, each axis scaled to
    its range (ends labelled), one polyline per run (named in `runs`) coloured by its
    accuracy's bin, and the runs as points on the accuracy axis with every value on hover.
    A click on a run selects it here and in its curves (`curves_figure`)."""
    labels, unit = [a[0] for a in axes], [_unit(a[1]) for a in axes]
    acc, n = axes[-1][1], len(axes)
    data = _binned_lines(_bins(acc), [list(range(n))] * len(acc),
                         [[u[i] for u in unit] for i in range(len(acc))])
    text = ["<br>".join([runs[i], *(f"{lab} = {a[1][i]:.4g}" for lab, a in zip(labels, axes))])
            for i in range(len(acc))]
    data.append({"type": "scatter", "mode": "markers", "name": "runs", "showlegend": False,
                 "x": [n - 1] * len(acc), "y": rounded(unit[-1], 4), "text": text,
                 "customdata": list(range(len(acc))), "hovertemplate": "%{text}<extra></extra>",
                 "marker": {"color": rounded(acc, 4), "colorscale": "Viridis", "size": 7,
                            "showscale": True, "colorbar": {"title": {"text": "val acc (%)"}}}})
    ends = [{"x": k, "y": y, "yanchor": anchor, "showarrow": False, "font": {"size": 10},
             "text": f"{f(a[1]):.4g}"} for k, a in enumerate(axes)
            for y, anchor, f in ((0, "top", min), (1, "bottom", max))]
    return {"data": [*data, SELECTED], "layout": {
        "title": {"text": f"{name}: every grid run" + (
            f" ({dropped} diverged, not shown)" if dropped else "") + "; click one",
            "font": {"size": 13}},
        "xaxis": {"tickvals": list(range(n)), "ticktext": labels, "zeroline": False,
                  "range": [-0.3, n - 0.7], "gridcolor": "#888"},
        "yaxis": {"visible": False, "range": [-0.1, 1.1]}, "annotations": ends,
        "hovermode": "closest", "margin": {"l": 30, "r": 10, "t": 40, "b": 40},
        "meta": {"link": f"runcurves-{name}", "names": runs}}}


def curves_figure(name: str, kept: list[dict[str, Any]]) -> dict[str, Any]:
    """Every run's validation accuracy during training, coloured as in its parallel
    coordinates; a click on a run selects it here and there."""
    acc = [100 * r["acc"] for r in kept]
    data = _binned_lines(_bins(acc), [[s for s, _ in r["curve"]] for r in kept],
                         [[100 * v for _, v in r["curve"]] for r in kept])
    return {"data": [*data, SELECTED], "layout": {
        "title": {"text": f"{name}: validation accuracy of every grid run; click one",
                  "font": {"size": 13}},
        "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": "val acc (%)"}},
        "hovermode": "closest", "margin": {"l": 55, "r": 10, "t": 40, "b": 45},
        "meta": {"link": f"parcoords-{name}", "names": [r["run"] for r in kept]}}}


def parallel_coordinates(points: list[dict[str, Any]]
                         ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(optimizer, parallel coordinates, the runs' curves) for each optimizer whose grid
    varies two or more hyperparameters; diverged runs have no final accuracy and are left
    out (their count is in the title)."""
    out = []
    for name in dict.fromkeys(p["optimizer"] for p in points):
        rows = [p for p in points if p["optimizer"] == name]
        varying = _varying(rows)
        kept = [r for r in rows if math.isfinite(r["acc"])]
        if len(varying) >= 2 and kept:
            out.append((name, parallel_figure(name, _axes(kept, varying),
                                              len(rows) - len(kept), [r["run"] for r in kept]),
                        curves_figure(name, kept)))
    return out


def budget_figure(curves: dict[str, Any]) -> dict[str, Any]:
    """Expected best validation score against the number of random trials k (see
    `optimlab.analysis.budget.budget_curves`): a line per optimizer, its bootstrap band
    shaded in its colour."""
    acc = curves["higher_is_better"]
    scale = 100.0 if acc else 1.0
    data: list[dict[str, Any]] = []
    for i, (name, mean) in enumerate(curves["expected_best"].items()):
        color, k = COLORS[i % len(COLORS)], list(range(1, len(mean) + 1))
        band = curves["band"][name]
        data.append({"type": "scatter", "mode": "lines", "x": k + k[::-1],
                     "y": rounded([scale * v for v in band["high"] + band["low"][::-1]]),
                     "fill": "toself", "fillcolor": color, "opacity": 0.2,
                     "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False,
                     "legendgroup": name})
        data.append({"type": "scatter", "mode": "lines+markers", "name": name,
                     "legendgroup": name, "x": k, "y": rounded([scale * v for v in mean]),
                     "line": {"color": color}, "marker": {"size": 4},
                     "hovertemplate": "k=%{x}: %{y:.4g}<extra>" + name + "</extra>"})
    what = "accuracy (%)" if acc else "loss"
    return {"data": data, "layout": {
        "title": {"text": f"expected best validation {what.split(' ')[0]} vs number of "
                          "trials", "font": {"size": 13}},
        "xaxis": {"type": "log", "title": {"text": "random trials k"}},
        "yaxis": {"title": {"text": f"expected best validation {what}"}},
        "margin": {"l": 55, "r": 10, "t": 40, "b": 45}}}
