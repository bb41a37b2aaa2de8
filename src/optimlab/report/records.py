"""The records a report reads: the torch-free readers of `optimlab.analysis.records` under
the names the report's modules use, and `export_csv`, a folder's curves as curves.csv."""

from __future__ import annotations

from pathlib import Path

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
           "export_csv", "load_compare", "read_curves", "read_json", "read_summary"]


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
