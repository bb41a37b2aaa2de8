"""Figures, tables and the HTML report, made from saved records only (the report never trains).

`render(out_dir)` rebuilds `curves.png` and `report.html` of a compare folder (see
`optimlab.lab.compare` for its files).

Extra figures contract: when `out_dir/diagnostics.json` exists (the lab writes the
callbacks' results there), `render` calls
`optimlab.report.diagnostics.render(records, out_dir) -> list[Path]`, `records` being the
list stored in diagnostics.json, and embeds every PNG it returns.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from optimlab.report.page import config_sections, html_table, inline_png, write_page
from optimlab.report.plots import plot_curves
from optimlab.report.records import read_curves
from optimlab.report.table import COLUMNS, table_rows

RUN_COLUMNS = ("run", "steps", "final test acc", "best test acc", "final train loss",
               "train s", "steps/s", "optimizer ms/step", "time to target", "diverged at")


def _fmt(x: Any, fmt: str) -> str:
    return "–" if x is None else f"{x:{fmt}}"


def _run_row(r: dict[str, Any]) -> list[str]:
    ttt = (f"{r['time_to_target_s']:.1f} s, step {r['time_to_target_step']}"
           if r["time_to_target_s"] is not None else "–")
    return [r["run"], str(r["steps"]), _fmt(r["final_test_acc"], ".2%"),
            _fmt(r["best_test_acc"], ".2%"), _fmt(r["final_train_loss"], ".3g"),
            _fmt(r["train_seconds"], ".1f"), _fmt(r["steps_per_s"], ".0f"),
            _fmt(r["optimizer_ms_per_step"], ".3f"), ttt, _fmt(r["diverged_step"], "d")]


def load_compare(out_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(config.json, summary.json) of a compare folder; a clear error when either is missing."""
    for name in ("config.json", "summary.json", "curves.csv"):
        if not (out_dir / name).is_file():
            raise FileNotFoundError(f"{out_dir} is not a compare folder: {name} is missing")
    meta = json.loads((out_dir / "config.json").read_text())
    return meta, json.loads((out_dir / "summary.json").read_text())


def diagnostics_figures(out_dir: Path) -> list[Path]:
    """The diagnostics figures' PNGs, when the folder has diagnostics records."""
    path = out_dir / "diagnostics.json"
    if not path.is_file():
        return []
    module = importlib.import_module("optimlab.report.diagnostics")
    return list(module.render(json.loads(path.read_text()), out_dir))


def render(out_dir: str | Path) -> Path:
    """Rewrite curves.png and report.html of a compare folder; returns report.html's path."""
    out = Path(out_dir)
    meta, records = load_compare(out)
    png = plot_curves(records, read_curves(out / "curves.csv"), out / "curves.png")
    figures = [inline_png(png, "training curves")]
    figures += [inline_png(p, p.stem) for p in diagnostics_figures(out)]
    sections = [
        ("Summary (mean ± std over seeds)", html_table(COLUMNS, table_rows(records))),
        ("Curves", "\n".join(figures)),
        ("Runs", html_table(RUN_COLUMNS, [_run_row(r) for r in records])),
        *config_sections(meta),
    ]
    return write_page(out / "report.html", title="optimlab compare", sections=sections)


__all__ = ["load_compare", "render"]
