"""The landscape report: report.html from paths.json (written by `optimlab landscape`).

The protocol runs every η of its grid for every optimizer and keeps every path
(`optimlab.landscape.run.best_run`); the page only slides over them: an η slider (or
each optimizer's chosen η), a step slider with play/pause, and the legend to toggle an
optimizer. No optimizer formula is copied into the page; the contours are the test
functions evaluated here, in Python.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.landscape.functions import surface
from optimlab.report import interactive
from optimlab.report.landscape_claims import RULE, landscape_claims
from optimlab.report.page import CLAIMS_TITLE, claims_html, inline_png, write_page
from optimlab.report.records import DamagedRecords, read_json

CONTOUR_POINTS = 80  # per axis: smooth contours, ~50 KB of numbers per function
COLORS = {"sgd": "#1f77b4", "momentum": "#ff7f0e", "rmsprop": "#2ca02c", "adam": "#d62728",
          "adamw": "#9467bd"}


def load(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "paths.json"
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir} is not a landscape folder: paths.json is missing")
    record = read_json(path)
    if not isinstance(record, dict) or record.get("kind") != "optimlab.landscape":
        raise DamagedRecords(f"{path} is damaged: not a landscape record (kind "
                             f"{record.get('kind') if isinstance(record, dict) else None!r})")
    return record


def contours(name: str, rec: dict[str, Any]) -> dict[str, Any]:
    xs, ys, z = surface(name, rec["bounds"], rec["log_contours"], CONTOUR_POINTS)
    return {"x": interactive.rounded(xs, 4), "y": interactive.rounded(ys, 4),
            "z": [interactive.rounded(row, 4) for row in z],
            "log": bool(rec["log_contours"])}


def _runs(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per optimizer: every η's path (a fixed η: the one path) and which η was chosen."""
    out = []
    for opt, run in rec["runs"].items():
        grid = run.get("grid") if run.get("lr_source") == "grid" else None
        if grid and all("path" in g for g in grid):
            lrs, paths = [g["lr"] for g in grid], [g["path"] for g in grid]
            reached = [g["steps_to_tol"] for g in grid]
        else:  # a fixed η, or a record written before the grid's paths were kept
            lrs, paths, reached = [run["lr"]], [run["path"]], [run["steps_to_tol"]]
        out.append({"name": opt, "color": COLORS.get(opt, "#333"), "lrs": lrs,
                    "chosen": lrs.index(run["lr"]), "reached": reached,
                    "paths": [[interactive.rounded(p[:, 0], 4), interactive.rounded(p[:, 1], 4)]
                              for p in (np.asarray(path, float).reshape(-1, 2)
                                        for path in paths)]})
    return out


def page_data(record: dict[str, Any]) -> dict[str, Any]:
    functions = []
    for name, rec in record["functions"].items():
        functions.append({"div": f"land-{name}", "title": f"{name}: {rec['formula']}",
                          "minimum": rec["minimum"], "start": rec["start"],
                          "bounds": rec["bounds"], "target": rec["target"],
                          "contour": contours(name, rec), "runs": _runs(rec)})
    grid = [float(x) for x in record["config"].get("lr_grid") or []]
    fixed = record["config"].get("lr") is not None
    return {"landscape": {"functions": functions, "steps": record["config"]["steps"],
                          "lr_grid": [] if fixed else grid}}


CONTROLS = """<div class="controls">
<label>η: <input id="land-lr" type="range" min="0" max="NLR" value="0">
<span id="land-lr-value">each optimizer's chosen η</span></label><br>
<label>step: <input id="land-step" type="range" min="0" max="STEPS" value="STEPS">
<span id="land-step-value">STEPS</span> / STEPS</label>
<button id="land-play" type="button">play</button>
</div>"""


def prose(text: str) -> str:
    """Docstring text as HTML: escaped, its ``literals`` as code."""
    return re.sub(r"``(.+?)``", r"<code>\1</code>", html.escape(text))


def render(out_dir: str | Path) -> Path:
    """Write report.html of a landscape folder; returns its path."""
    out = Path(out_dir)
    record = load(out)
    cfg = record["config"]
    about = f"<p>{cfg['steps']} steps from the same start. {prose(record['criterion'])}</p>"
    claims = (CLAIMS_TITLE, claims_html(landscape_claims(record), RULE))
    if not interactive.available():
        png = out / "landscape.png"
        figure = inline_png(png, "landscape") if png.is_file() else ""
        return write_page(out / "report.html", title="optimlab landscape",
                          note=interactive.NO_PLOTLY,
                          sections=[("Paths", about + figure), claims])
    data = page_data(record)
    n_lr = len(data["landscape"]["lr_grid"])
    controls = CONTROLS.replace("NLR", str(n_lr)).replace("STEPS", str(cfg["steps"]))
    divs = "".join(f'<div id="{f["div"]}" class="chart"></div>'
                   for f in data["landscape"]["functions"])
    sections = [("Paths (the slider picks η from the grid the protocol ran; click a legend "
                 "entry to hide an optimizer)", about + controls +
                 f'<div class="charts">{divs}</div>'), claims]
    return write_page(out / "report.html", title="optimlab landscape", sections=sections,
                      style=interactive.STYLE, scripts=interactive.page_scripts(data))
