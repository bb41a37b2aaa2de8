"""Pictures of paths.json: contours with the paths (PNG) and the same animated (HTML).

Plotting reads the record only; it never runs an optimizer. The contours are
the test functions evaluated on a grid.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib.colors
import numpy as np
from matplotlib.figure import Figure
from PIL import Image  # matplotlib's own dependency

from optimlab.landscape.functions import surface

COLORS = {"sgd": "tab:blue", "momentum": "tab:orange", "rmsprop": "tab:green",
          "adam": "tab:red", "adamw": "tab:purple"}


def _contours(ax: Any, name: str, rec: dict[str, Any]) -> None:
    xmin, xmax, ymin, ymax = rec["bounds"]
    xs, ys, z = surface(name, rec["bounds"], rec["log_contours"], 200)
    ax.contourf(xs, ys, z, levels=30, cmap="Greys_r", alpha=0.6)
    ax.contour(xs, ys, z, levels=15, colors="white", linewidths=0.4)
    if rec["minimum"] is not None:
        ax.plot(*rec["minimum"], marker="*", color="gold", markersize=12, markeredgecolor="k")
    ax.plot(*rec["start"], marker="o", color="k", markersize=4)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_title(f"{name}: {rec['formula']}", fontsize=9)


def _figure(record: dict[str, Any]) -> tuple[Any, list[Any]]:
    names = list(record["functions"])
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        _contours(ax, name, record["functions"][name])
    return fig, list(axes.flat[:len(names)])


def _label(opt: str, run: dict[str, Any]) -> str:
    reached = "—" if run["steps_to_tol"] is None else str(run["steps_to_tol"])
    return f"{opt} η={run['lr']:g} ({reached})"


def plot_landscape(record: dict[str, Any], out: Path) -> Path:
    """One panel per function, every optimizer's path; the legend gives η and steps to tol."""
    fig, axes = _figure(record)
    for ax, rec in zip(axes, record["functions"].values()):
        for opt, run in rec["runs"].items():
            xy = np.asarray(run["path"])
            ax.plot(xy[:, 0], xy[:, 1], "-", color=COLORS.get(opt), lw=1.2, marker=".",
                    markersize=2, label=_label(opt, run))
        ax.legend(fontsize=7, loc="best", title="η (steps to tol)", title_fontsize=7)
    fig.suptitle(_suptitle(record), fontsize=9)
    fig.tight_layout()
    out.write_bytes(_png(fig))
    return out


def _png(fig: Any) -> bytes:
    """The figure as a 256-colour PNG: a third of the size of matplotlib's RGBA file."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    small = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(256).save(small, format="png", optimize=True)
    return small.getvalue()


def _suptitle(record: dict[str, Any]) -> str:
    cfg = record["config"]
    how = "η fixed" if cfg["lr"] is not None else "η: best of the grid per optimizer"
    noise = f", gradient noise σ={cfg['noise']:g}" if cfg["noise"] else ""
    return f"{cfg['steps']} steps, {how}{noise}"


def animate_html(record: dict[str, Any], out: Path) -> Path:
    """A self-contained HTML page: the contours as an embedded PNG, the paths drawn over it
    by a few lines of JavaScript (no network, no external files), with play/pause, a step
    slider and a switch per optimizer. The interactive report (report.html) slides over
    every η of the grid too; this page is the light one, without plotly."""
    fig, axes = _figure(record)
    fig.set_dpi(DPI)
    height = fig.get_size_inches()[1] * DPI
    runs = []
    for ax, rec in zip(axes, record["functions"].values()):
        x0, y0, x1, y1 = ax.bbox.extents
        for opt, run in rec["runs"].items():
            ax.plot([], [], "-", color=COLORS.get(opt), label=_label(opt, run))
            px = ax.transData.transform(np.asarray(run["path"]))
            runs.append({"name": opt, "color": matplotlib.colors.to_hex(COLORS.get(opt, "k")),
                         "clip": [x0, height - y1, x1 - x0, y1 - y0],
                         "xy": np.round(np.c_[px[:, 0], height - px[:, 1]], 1).tolist()})
        ax.legend(fontsize=7, loc="best", title="η (steps to tol)", title_fontsize=7)
    fig.suptitle(_suptitle(record), fontsize=9)
    image = base64.b64encode(_png(fig)).decode()
    out.write_text(_PAGE.replace("IMAGE", image).replace("RUNS", json.dumps(runs)))
    return out


DPI = 80  # the page's pixel grid; the paths are converted to it in Python

# Playing, the frames follow step counts spaced geometrically: the first steps move the most.
_PAGE = """<!doctype html><meta charset="utf-8"><title>optimlab landscape</title>
<body style="margin:0;font:14px system-ui,sans-serif">
<div style="padding:6px 10px;background:#f6f6f6">
<button id="play" type="button">pause</button>
<label>step <input id="step" type="range" min="0" value="0" style="vertical-align:middle">
<span id="step-value">0</span> / <span id="steps"></span></label>
<span id="toggles"></span></div>
<div style="position:relative">
<img id="bg" src="data:image/png;base64,IMAGE" style="position:absolute">
<canvas id="cv" style="position:absolute"></canvas></div><script>
const runs = RUNS, bg = document.getElementById("bg"), cv = document.getElementById("cv");
const slider = document.getElementById("step"), play = document.getElementById("play");
const n = Math.max(...runs.map(r => r.xy.length)) - 1, hidden = new Set();
let step = 0, frame = 0, timer = null;
slider.max = n; document.getElementById("steps").textContent = n;
for (const name of new Set(runs.map(r => r.name))) {
  const label = document.createElement("label"), box = document.createElement("input");
  box.type = "checkbox"; box.checked = true; box.dataset.name = name;
  box.addEventListener("change", () => { box.checked ? hidden.delete(name) : hidden.add(name);
                                         draw(); });
  const colour = runs.find(r => r.name === name).color;
  label.append(" ", box, Object.assign(document.createElement("span"),
    {textContent: "\u25a0 ", style: "color:" + colour}), name);
  document.getElementById("toggles").append(label);
}
function draw() {
  const c = cv.getContext("2d"); c.clearRect(0, 0, cv.width, cv.height);
  for (const r of runs.filter(r => !hidden.has(r.name))) {
    c.save(); c.beginPath(); c.rect(...r.clip); c.clip();
    c.strokeStyle = r.color; c.lineWidth = 1.5; c.beginPath();
    r.xy.slice(0, step + 1).forEach(([x, y], i) => i ? c.lineTo(x, y) : c.moveTo(x, y));
    c.stroke(); c.restore();
  }
  slider.value = step; document.getElementById("step-value").textContent = step;
}
function pause() { clearInterval(timer); timer = null; play.textContent = "play"; }
function start() {
  if (step >= n) frame = 0;
  play.textContent = "pause";
  timer = setInterval(() => {
    frame += 1; step = Math.min(n, Math.ceil(Math.pow(n + 1, frame / 100)) - 1); draw();
    if (step >= n) pause();
  }, 80);
}
play.addEventListener("click", () => timer ? pause() : start());
slider.addEventListener("input", () => { pause(); step = +slider.value; draw(); });
bg.onload = () => { cv.width = bg.naturalWidth; cv.height = bg.naturalHeight; draw(); start(); };
</script>
"""
