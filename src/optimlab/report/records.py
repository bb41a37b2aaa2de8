"""The records a report reads: the torch-free readers of `optimlab.analysis.records` under
the names the report's modules use, `export_csv`, a folder's curves as curves.csv, and a
curve's seeds as rows (`seed_rows`, `x_axes`), which the PNGs and the pages share."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from optimlab.analysis.records import (
    Curves,
    DamagedRecords,
    curves_from_rows,
    curves_of_store_runs,
    load_compare,
    read_curves,
    read_json,
    read_summary,
    write_curves_csv,
)
from optimlab.analysis.store import FILENAME, read_runs

__all__ = ["Curves", "DamagedRecords", "curves_from_rows", "curves_of_store_runs",
           "export_csv", "load_compare", "read_curves", "read_json", "read_summary",
           "seed_rows", "x_axes"]


def export_csv(run_dir: str | Path) -> tuple[Path, int]:
    """RUN_DIR/curves.csv from the store of a sweep or reproduction folder (where the curves
    are kept compact); a compare folder's is already there. Returns (its path, runs in it)."""
    run_dir = Path(run_dir)
    path = run_dir / "curves.csv"
    if (run_dir / FILENAME).is_file():
        runs = read_runs(run_dir)
        return write_curves_csv(path, ((r["run"], r["curves"]) for r in runs)), len(runs)
    if path.is_file() and (run_dir / "summary.json").is_file():
        return path, len(read_summary(run_dir / "summary.json"))
    raise ValueError(f"Invalid RUN_DIR {str(run_dir)!r}: it holds neither {FILENAME} (a sweep "
                     "or reproduction folder) nor summary.json and curves.csv (a compare folder)")


def seed_rows(arrays: list[np.ndarray]) -> np.ndarray:
    """Seeds as rows, padded with NaN where a run stopped early (diverged)."""
    out = np.full((len(arrays), max(len(a) for a in arrays)), np.nan)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return out


def x_axes(parts: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One curve's x axes across a group's seeds: the steps (those of the longest seed) and
    the mean training seconds."""
    with warnings.catch_warnings():  # all-NaN columns after a divergence are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nanmax(seed_rows([p["step"] for p in parts]), 0),
                np.nanmean(seed_rows([p["train_seconds"] for p in parts]), 0))
