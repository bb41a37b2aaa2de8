"""The sweep's static figures, as PNG files next to its page (`optimlab sweep --png`,
`optimlab report DIR --png`, and always on a page without the chart library): η-sensitivity,
Adam's β₁×β₂ heatmap, the best configurations' curves and the budget curves, each the
static twin of a chart of the interactive page. Imported only to draw them: matplotlib's
import and its text layout are most of a short sweep's fixed cost (docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from optimlab.report.page import inline_png
from optimlab.report.plots import legend, plot_curves
from optimlab.report.records import Curves
from optimlab.report.sweep import others_text
from optimlab.report.sweep_interactive import adam_pairs, stats
from optimlab.report.table import series_label


def drawn(out: Path, points: list[dict[str, Any]], best: dict[str, dict[str, Any]],
          best_records: list[dict[str, Any]], curves: Curves,
          by_budget: dict[str, Any] | None) -> list[str]:
    """Draw the figures into `out`; each as the page's inline image."""
    figures = [inline_png(plot_lr_sensitivity(points, best, out / "lr_sensitivity.png"),
                          "η-sensitivity")]
    heatmap = plot_beta_heatmap(points, out / "adam_betas.png")
    figures += [inline_png(heatmap, "Adam β₁×β₂")] if heatmap else []
    if best_records:
        png = plot_curves(best_records, curves, out / "best_curves.png")
        figures.append(inline_png(png, "best configurations' curves"))
    if by_budget:
        figures.append(inline_png(plot_budget(by_budget, out / "expected_best.png"),
                                  "expected best of k trials"))
    return figures


def plot_lr_sensitivity(points: list[dict[str, Any]], best: dict[str, dict[str, Any]],
                        path: Path) -> Path:
    """Final val loss and accuracy against η: per optimizer, mean over seeds, min..max band."""
    # regression records no accuracy: its panel is left out
    keys = ("loss", "acc") if any(np.isfinite(p["acc"]) for p in points) else ("loss",)
    fig = Figure(figsize=(5.5 * len(keys), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for color, name in enumerate(dict.fromkeys(p["optimizer"] for p in points)):
        hp = best[name]["config"]["hyperparameters"] if name in best else {}
        line = [p for p in points if p["optimizer"] == name and p["others"] == others_text(hp)]
        lrs = sorted({p["lr"] for p in line})
        for ax, key in zip(axes, keys, strict=True):
            mean, lo, hi = np.array([stats([p[key] for p in line if p["lr"] == lr])
                                     for lr in lrs]).T
            label = series_label(name, {k: v for k, v in hp.items() if k != "lr"})
            ax.plot(lrs, mean, "o-", color=f"C{color}", label=label, ms=3)
            ax.fill_between(lrs, lo, hi, color=f"C{color}", alpha=0.2, lw=0)
    for ax, title in zip(axes, ("final validation loss", "final validation accuracy"),
                         strict=False):
        ax.set(xscale="log", xlabel="learning rate η", title=title)
        ax.grid(alpha=0.3)
    legend(axes[0], fontsize=8)
    fig.savefig(path, dpi=100)
    return path


def plot_beta_heatmap(points: list[dict[str, Any]], path: Path) -> Path | None:
    """Adam's best final val loss over η per (β₁, β₂), or None when the grid has one pair."""
    by_pair = adam_pairs(points)
    b1s, b2s = sorted({b[0] for b in by_pair}), sorted({b[1] for b in by_pair})
    if len(by_pair) < 2:
        return None
    grid = np.full((len(b1s), len(b2s)), np.nan)
    fig = Figure(figsize=(1.6 * len(b2s) + 2.5, 1.0 * len(b1s) + 1.8), layout="constrained")
    ax = fig.subplots()
    for (b1, b2), per_lr in by_pair.items():
        means = {lr: stats(v)[0] for lr, v in per_lr.items()}
        lr = min(means, key=lambda k: np.inf if np.isnan(means[k]) else means[k])
        grid[b1s.index(b1), b2s.index(b2)] = means[lr]
        ax.text(b2s.index(b2), b1s.index(b1), f"{means[lr]:.3g}\nη={lr:g}", ha="center",
                va="center", fontsize=8)
    im = ax.imshow(grid, cmap="viridis_r", aspect="auto")
    ax.set(xticks=range(len(b2s)), xticklabels=[f"{b:g}" for b in b2s], xlabel="β₂",
           yticks=range(len(b1s)), yticklabels=[f"{b:g}" for b in b1s], ylabel="β₁",
           title="Adam: best final validation loss over η")
    fig.colorbar(im, ax=ax)
    fig.savefig(path, dpi=100)
    return path


def plot_budget(curves: dict[str, Any], path: Path) -> Path:
    """Expected best validation score against k random trials, a line per optimizer."""
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    scale = 100.0 if curves["higher_is_better"] else 1.0
    for color, (name, mean) in enumerate(curves["expected_best"].items()):
        k = np.arange(1, len(mean) + 1)
        band = curves["band"][name]
        ax.plot(k, scale * np.array(mean), "o-", ms=3, color=f"C{color}", label=name)
        ax.fill_between(k, scale * np.array(band["low"]), scale * np.array(band["high"]),
                        color=f"C{color}", alpha=0.2, lw=0)
    what = "accuracy (%)" if curves["higher_is_better"] else "loss"
    ax.set(xscale="log", xlabel="random trials k", ylabel=f"expected best validation {what}",
           title="expected best validation score vs number of trials")
    ax.grid(alpha=0.3)
    legend(ax, fontsize=8)
    fig.savefig(path, dpi=100)
    return path
