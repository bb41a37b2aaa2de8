"""Interactive report pages: one self-contained HTML file per report, plotly.js embedded once.

Why plotly: one library draws everything the reports need (lines with hover and legend
toggles, bands, error bars, heatmaps, contours), and its `Plotly.react`/`restyle` let the
few lines of page script below redraw a chart when a control moves. The figures are written
here as plain dicts. The page embeds plotly's cartesian bundle (vendor/README.md: version,
checksums, licence) rather than the full plotly.min.js: 1.5 MB instead of 4.8 MB, the trace
types the pages use and no more. It is stored gzip-compressed (0.5 MB), embedded as base64
and unpacked by the browser (`DecompressionStream`), as is the page's data: a page is about
0.7 MB plus its compressed data and figures, opens offline, from a file, with no CDN and no
request.

What the page script computes is display only: the trailing moving average of the
smoothing slider (the same definition as `optimlab.report.plots.smooth`, checked against
it in the browser tests) and the mean/min/max over seeds of the smoothed curves. Every
number of the runs comes from the records.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.report.records import Curves, seed_rows, x_axes
from optimlab.report.table import group_runs, series_label

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
PLOTLY_GZ = Path(__file__).with_name("vendor") / "plotly-cartesian.min.js.gz"
# Points per curve on the page: more than a chart's width in pixels, so that a long run's
# per-step minibatch loss (20,000 steps × 8 runs: a 1.7 MB page) is sent as bucket means.
MAX_POINTS = 2000
NO_PLOTLY = (f"the chart library ({PLOTLY_GZ.name}) is missing from this installation: "
             "static figures only (reinstall optimlab for the interactive report)")


def available() -> bool:
    return PLOTLY_GZ.is_file()


@functools.cache
def plotly_base64() -> str:
    """The vendored bundle as the page carries it: gzip bytes in base64 (read once)."""
    return base64.b64encode(PLOTLY_GZ.read_bytes()).decode("ascii")


def rounded(values: Any, digits: int = 5) -> list[float | None]:
    """Numbers for the page: `digits` significant digits (the file stays small), null for
    NaN/Inf (JSON has neither; plotly draws a gap)."""
    out: list[float | None] = []
    for v in np.asarray(values, dtype=float).ravel().tolist():
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
    return out


def bucketed(steps: np.ndarray, secs: np.ndarray, rows: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A curve of more than MAX_POINTS points as the means of `per` consecutive points
    (x: each bucket's last step and seconds), `per` the fewest that fit; gaps are left out
    of a mean, an all-gap bucket stays a gap."""
    n = rows.shape[-1]
    per = -(-n // MAX_POINTS)
    if per == 1:
        return steps, secs, rows, 1
    pad = -n % per

    def buckets(a: np.ndarray) -> np.ndarray:
        filled = np.concatenate([a, np.full((*a.shape[:-1], pad), np.nan)], -1)
        return filled.reshape(*a.shape[:-1], -1, per)

    with warnings.catch_warnings():  # all-gap buckets after a divergence are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nanmax(buckets(steps), -1), np.nanmax(buckets(secs), -1),
                np.nanmean(buckets(rows), -1), per)


def curve_groups(records: Sequence[dict[str, Any]], curves: Curves, split: str,
                 metric: str) -> list[dict[str, Any]]:
    """Per (optimizer, hyperparameters): x in steps and in mean training seconds, and
    every seed's values (shorter seeds, e.g. diverged, padded with gaps), `bucketed`."""
    out = []
    for i, ((optimizer, _), runs) in enumerate(group_runs(list(records)).items()):
        parts = [curves[r["run"]][(split, metric)] for r in runs
                 if r["run"] in curves and (split, metric) in curves[r["run"]]]
        if not parts:
            continue
        label = series_label(optimizer, runs[0]["hyperparameters"])
        diverged = sum(bool(r.get("diverged")) for r in runs)
        steps, secs, rows, per = bucketed(*x_axes(parts), seed_rows([p["value"] for p in parts]))
        out.append({"label": label + (f", {diverged} diverged" if diverged else ""),
                    "color": COLORS[i % len(COLORS)], "step": rounded(steps),
                    "sec": rounded(secs, 4), "per": per,
                    "seeds": [rounded(row) for row in rows]})
    return out


def curve_chart(div: str, title: str, ytitle: str, groups: list[dict[str, Any]], *,
                smooth: bool = False, log: bool = False, percent: bool = False) -> dict[str, Any]:
    """A chart the page script draws: mean line and min..max seed band per group."""
    return {"div": div, "title": title, "ytitle": ytitle, "groups": groups, "smooth": smooth,
            "log": log, "percent": percent}


def compare_charts(records: list[dict[str, Any]], curves: Curves,
                   prefix: str = "") -> tuple[list[dict[str, Any]], int]:
    """The curve charts of a set of runs (train loss, test loss, test accuracy) and the
    longest run's planned steps (the smoothing slider's scale)."""
    groups = lambda split, metric: curve_groups(records, curves, split, metric)  # noqa: E731
    charts = [
        curve_chart(f"{prefix}train-loss", "train loss (minibatch)", "loss",
                                groups("batch", "loss"), smooth=True, log=True),
        curve_chart(f"{prefix}test-loss", "test loss", "loss",
                                groups("test", "loss"), log=True),
        curve_chart(f"{prefix}test-acc", "test accuracy", "accuracy (%)",
                                groups("test", "acc"), percent=True)]
    steps = max((int(r.get("steps_planned") or r.get("steps") or 1) for r in records), default=1)
    return [c for c in charts if c["groups"]], steps


CONTROLS = """<div class="controls">
<label>smoothing: <input id="smooth" type="range" min="1" max="MAXW" value="INITW">
<span id="smooth-value">INITW</span> steps</label>
<label><input type="radio" name="yscale" value="log" checked> log</label>
<label><input type="radio" name="yscale" value="linear"> linear</label> (loss)
&nbsp;x: <label><input type="radio" name="xaxis" value="step" checked> steps</label>
<label><input type="radio" name="xaxis" value="sec"> training seconds</label>
</div>"""


def curves_section(charts: list[dict[str, Any]], max_steps: int) -> str:
    """The controls and one div per chart; the chart specs go into the page's data."""
    initial = max(1, max_steps // 50)
    controls = (CONTROLS.replace("MAXW", str(max(2, max_steps // 5)))
                .replace("INITW", str(initial)))
    divs = "".join(f'<div id="{c["div"]}" class="chart"></div>' for c in charts)
    return controls + f'<div class="charts">{divs}</div>'


def figure_div(div: str, figure: dict[str, Any]) -> str:
    """A static plotly figure (drawn once, interactive through plotly itself), its JSON
    compressed as `packed` (a sweep's figures of 1,000 runs: 280 kB as text, 25 kB so)."""
    text = json.dumps(figure, allow_nan=False, separators=(",", ":"))
    return f'<div id="{div}" class="chart figure" data-figure="{packed(text)}"></div>'


def sortable_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table whose column headers sort it (numbers by value, text alphabetically)."""
    head = "".join(f'<th title="sort">{html.escape(str(h))}</th>' for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """
.controls { background: #f6f6f6; padding: 0.5em 0.8em; margin: 0.5em 0; font-size: 0.9em; }
.controls input[type=range] { width: 16em; vertical-align: middle; }
.charts { display: flex; flex-wrap: wrap; }
.chart { width: 580px; height: 400px; }
.chart.wide { width: 1160px; height: 460px; } .chart.tall { height: 500px; }
table.sortable th { cursor: pointer; } table.sortable th:after { content: " ⇅"; color: #999; }
"""

# The page script (display only), next to this file so that it reads as JavaScript.
SCRIPT = Path(__file__).with_name("report.js")


def packed(text: str) -> str:
    """Text as the page carries it: gzip (mtime 0, so that a page is reproducible) in base64."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), 9, mtime=0)).decode("ascii")


def page_scripts(data: dict[str, Any]) -> str:
    """plotly.js once and the page's data as JSON, both compressed (the records' numbers
    compress about 4×: the landscape's paths go from 1.6 MB to 0.5 MB), and the page script,
    which unpacks them and draws (at the end of body)."""
    payload = packed(json.dumps(data, allow_nan=False, separators=(",", ":")))
    return (f'<script type="application/gzip;base64" id="optimlab-plotly">{plotly_base64()}'
            "</script>\n"
            f'<script type="application/gzip;base64" id="optimlab-data">{payload}</script>\n'
            f"<script>{SCRIPT.read_text(encoding='utf-8')}</script>")
