"""curves.png from the saved records: loss and accuracy against steps and training time.

Each (optimizer, hyperparameters) is one colour: its line is the mean over seeds and
the shaded band spans the seeds' min..max. Plotting never trains; it reads curves.csv.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from optimlab.report.records import Curves, seed_rows, x_axes
from optimlab.report.table import group_runs, series_label


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter windows at the start): minibatch losses are noisy."""
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _band(ax: Any, x: np.ndarray, ys: np.ndarray, color: Any, label: str) -> None:
    with warnings.catch_warnings():  # all-NaN columns after a divergence are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, lo, hi = np.nanmean(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)
    ax.plot(x, mean, color=color, label=label, lw=1.4)
    if len(ys) > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


def _group_series(series: list[dict[tuple[str, str], dict[str, np.ndarray]]], split: str,
                  metric: str, window: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean train_seconds, values per seed) of one curve across a group's seeds."""
    parts = [s[(split, metric)] for s in series if (split, metric) in s]
    return (*x_axes(parts), seed_rows([smooth(p["value"], window) for p in parts]))


class InlineFigure(Figure):
    """A Figure that Jupyter shows as a PNG when it is a cell's value (no pyplot, no
    backend chosen: the notebook's own plotting is left alone)."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=90)
        return buf.getvalue()


def curves_figure(records: list[dict[str, Any]], curves: Curves) -> InlineFigure:
    """Train loss vs step (log), test accuracy (regression: test loss) vs step, train loss
    vs training seconds; one colour per run family."""
    fig = InlineFigure(figsize=(15, 4.3), layout="constrained")
    axes = fig.subplots(1, 3)
    colors = matplotlib.colormaps["tab10"].colors  # type: ignore[attr-defined]
    window, start_loss, metric = 1, 0.0, "test accuracy (%)"
    for i, ((optimizer, _), runs) in enumerate(group_runs(records).items()):
        series = [curves[r["run"]] for r in runs if r["run"] in curves]
        if not series:
            continue
        diverged = sum(r["diverged"] for r in runs)
        label = series_label(optimizer, runs[0]["hyperparameters"]) + (
            f", {diverged} diverged" if diverged else "")
        color = colors[i % len(colors)]
        window = max(1, int(max(r["steps_planned"] for r in runs)) // 50)
        steps, secs, loss = _group_series(series, "batch", "loss", window)
        start_loss = max(start_loss, float(np.nanmax(loss[:, 0])))
        _band(axes[0], steps, loss, color, label)
        _band(axes[2], secs, loss, color, label)
        if any(("test", "acc") in x for x in series):
            steps, _, acc = _group_series(series, "test", "acc")
            _band(axes[1], steps, 100 * acc, color, label)
        else:  # regression: the loss is the metric
            steps, _, test_loss = _group_series(series, "test", "loss")
            _band(axes[1], steps, test_loss, color, label)
            axes[1].set_yscale("log")
            metric = "test loss"
    titles = (f"train loss (minibatch, moving average of {window} steps)",
              metric, "train loss vs training time")
    for ax, title, xlabel in zip(axes, titles, ("step", "step", "training seconds")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    for ax in (axes[0], axes[2]):
        ax.set_yscale("log")
        if start_loss > 0:  # a diverging run would squash every other curve flat
            ax.set_ylim(top=3 * start_loss)
    legend(axes[1], fontsize=8, loc="best")
    return fig


def legend(ax: Any, **kwargs: Any) -> None:
    """The axes' legend, when they hold a labelled artist: matplotlib warns on an empty one
    (a figure whose every run diverged, or a reproduction panel with no finite point)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def plot_curves(records: list[dict[str, Any]], curves: Curves, path: Path) -> Path:
    """curves.png: `curves_figure` saved."""
    curves_figure(records, curves).savefig(path, dpi=110)
    return path
