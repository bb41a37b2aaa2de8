"""The sweep report's interactive figures, as plotly figure dicts (drawn by the page script).

- η-sensitivity: final validation loss and accuracy against η, one line per optimizer and
  setting of its other hyperparameters (the best setting shown, the others one legend
  click away), the seeds' min..max as error bars, the grid's edges as dashed lines and
  the best η of each optimizer as a star in its line's colour (hollow, and said so in the
  legend, when it lies on the edge of the grid);
- Adam's β₁×β₂ heatmap: the best final validation loss over η per pair, η on hover;
- parallel coordinates per optimizer whose grid varies more than one hyperparameter.
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


def parallel_coordinates(points: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(optimizer, figure) for each optimizer whose grid varies two or more hyperparameters;
    diverged runs have no final accuracy and are left out (their count is in the title)."""
    out = []
    for name in dict.fromkeys(p["optimizer"] for p in points):
        rows = [p for p in points if p["optimizer"] == name]
        varying = _varying(rows)
        if len(varying) < 2:
            continue
        kept = [r for r in rows if math.isfinite(r["acc"])]
        if not kept:
            continue
        dims = []
        for key in varying:
            for label, values in _columns(kept, key):
                log = key == "lr" or (min(values) > 0 and max(values) / min(values) > 100)
                dims.append({"label": f"log10 {label}" if log else label,
                             "values": rounded([math.log10(v) for v in values] if log
                                               else values)})
        acc = rounded([100 * r["acc"] for r in kept])
        dims.append({"label": "val acc (%)", "values": acc})
        dropped = len(rows) - len(kept)
        out.append((name, {"data": [{"type": "parcoords", "dimensions": dims,
                                     "line": {"color": acc, "colorscale": "Viridis",
                                              "showscale": True}}],
                           "layout": {"title": {"text": f"{name}: every grid run" + (
                               f" ({dropped} diverged, not shown)" if dropped else ""),
                               "font": {"size": 13}, "pad": {"b": 50}},  # above the axes' names
                               "margin": {"l": 60, "r": 40, "t": 120, "b": 30}}}))
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
