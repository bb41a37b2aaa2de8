"""report.html of a reproduction: the verdict panel, the figure, the protocol.

Reads `reproduction.json` (written by `optimlab.lab.reproduce`) and nothing else; never
trains. The figure is drawn from the series the experiment recorded in it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from optimlab.report.page import command_html, html_table, inline_png, write_page
from optimlab.report.plots import legend

# Series that coincide (GD and SGD both at zero test error in Wilson's figure) stay apart:
# each has its own dash and marker, the earlier ones drawn wider, underneath.
STYLES = (("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1, 1, 1)), "v"))

COLOURS = {"reproduced": "#1a7f37", "partly": "#9a6700", "not reproduced": "#cf222e"}


def load(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / "reproduction.json"
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir} is not a reproduction folder: reproduction.json "
                                "is missing")
    return json.loads(path.read_text())


def plot(figure: dict[str, Any], path: Path) -> Path | None:
    """One panel per entry of figure["panels"]: its series as lines, its bands ({series
    label: [[x, low, high], ...]}) shaded, its hlines dashed.
    The panels are a list of {"title", "series", "hlines", ...}, or, as `Outcome` documents
    them, {panel title: series}."""
    panels = figure.get("panels", [])
    if isinstance(panels, dict):
        panels = [{"title": title, "series": series} for title, series in panels.items()]
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        series = list(panel.get("series", {}).items())
        for i, (label, points) in enumerate(series):
            if points:
                x, y = zip(*points)
                ls, marker = STYLES[i % len(STYLES)]
                # about 8 markers a line, staggered: those of coinciding lines stay apart
                every = max(len(series), len(x) // 8)
                ax.plot(x, y, label=label, ls=ls, marker=marker, ms=4,
                        markevery=(i * every // len(series), every),
                        lw=1 + 1.6 * (len(series) - 1 - i) / max(1, len(series) - 1),
                        zorder=2 + i)
        labels = [label for label, _ in series]
        for label, rows in panel.get("bands", {}).items():
            if rows and label in labels:  # a series' interval, shaded in its colour
                x, lo, hi = zip(*rows)
                ax.fill_between(x, lo, hi, color=f"C{labels.index(label) % 10}", alpha=0.2,
                                lw=0)
        for label, y in panel.get("hlines", {}).items():
            ax.axhline(y, ls="--", color="k", lw=1, label=label)
        if panel.get("log_y", figure.get("log_y")):
            ax.set_yscale("log")
        if panel.get("log_x", figure.get("log_x")):
            ax.set_xscale("log")
        ax.set_title(panel.get("title", ""), fontsize=10)
        ax.set_xlabel(panel.get("xlabel", figure.get("xlabel", "")))
        ax.set_ylabel(panel.get("ylabel", figure.get("ylabel", "")))
        legend(ax, fontsize=7)
    fig.suptitle(figure.get("title", ""), fontsize=11)
    fig.savefig(path, dpi=110)
    return path


def verdict_panel(rec: dict[str, Any]) -> str:
    colour = COLOURS.get(rec["verdict"], "#222")
    rows = [(c["claim"], c["published"], c["ours"], "yes" if c["holds"] else "NO")
            for c in rec["checks"]]
    return (f'<p style="font-size:1.4em;color:{colour}"><b>{html.escape(rec["verdict"])}</b>'
            f' ({html.escape(rec["budget"])} budget)</p>'
            f"<p>{html.escape(rec['verdict_line'])}</p>"
            f"<p><b>Source:</b> {html.escape(rec['source'])}<br>"
            f"<b>It reports:</b> {html.escape(rec['reports'])}<br>"
            f"<b>Data used:</b> {html.escape(rec['data'])}</p>"
            + html_table(("claim", "published", "ours", "holds"), rows))


def render(out_dir: str | Path) -> Path:
    """Rewrite figure.png and report.html of a reproduction folder; returns report.html."""
    out = Path(out_dir)
    rec = load(out)
    png = plot(rec.get("figure", {}), out / "figure.png")
    protocol = [(s["name"], s["value"], s["origin"]) for s in rec["protocol"]]
    env = sorted(rec.get("environment", {}).items())
    sections = [("Verdict", verdict_panel(rec)),
                *([("Figure", inline_png(png, "figure"))] if png else []),
                ("Protocol", html_table(("setting", "value", "from"), protocol)),
                ("Command", command_html(rec.get("command", ""))
                 + f"<p>run on {html.escape(rec.get('date', ''))}</p>"),
                ("Environment", html_table(("key", "value"), env))]
    return write_page(out / "report.html", title=f"optimlab reproduce {rec['experiment']}",
                      sections=sections)
