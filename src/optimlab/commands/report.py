"""`optimlab report DIR`: re-render report.html and its figures from saved records (no training).

Dispatch on what the folder holds, so that each folder re-renders as the page its command
wrote: a reproduction (`reproduction.json`; it also holds the records of its runs, the
store and summary.json), a suite (`suite.json`), a comparison (`config.json`; the store and
summary.json too), a sweep (`sweep.sqlite`), a comparison of an earlier version
(`summary.json`) or landscape paths (`paths.json`). A damaged record file (cut short, half
a line) is refused with a message naming the file and the defect.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# file that marks the folder -> the module whose render(DIR) draws it; the first that the
# folder holds decides (a comparison holds the run store too, a sweep summary.json)
KINDS = {"reproduction.json": "optimlab.report.reproduce", "suite.json": "optimlab.report.suite",
         "config.json": "optimlab.report",
         "sweep.sqlite": "optimlab.report.sweep", "summary.json": "optimlab.report",
         "paths.json": "optimlab.report.landscape"}
SWEEP = "sweep.sqlite"  # the one kind whose PNGs are drawn only when asked (--png)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", type=Path,
                   help="a folder written by compare, sweep, suite, landscape or reproduce")
    p.add_argument("--png", action="store_true",
                   help="a sweep's folder: also draw its figures as PNG files (the other "
                        "commands' folders always get theirs)")


def run(args: argparse.Namespace) -> int:
    out: Path = args.dir
    marker = next((name for name in KINDS if (out / name).is_file()), None)
    if marker is None:
        found = "it holds no records" if out.is_dir() else "no such folder"
        print(f"optimlab report: error: Invalid DIR {str(out)!r}: {found}; allowed: a folder "
              "with reproduction.json (written by reproduce), suite.json (by suite), "
              "summary.json (by compare), sweep.sqlite (by sweep) or paths.json (by "
              "landscape)", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(KINDS[marker])
        path = module.render(out, png=args.png) if marker == SWEEP else module.render(out)
    except (ValueError, OSError) as e:
        print(f"optimlab report: error: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
