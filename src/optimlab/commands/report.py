"""`optimlab report DIR`: re-render the figures and report.html from saved records (no training).

Dispatch on what the folder holds: a sweep (`sweep.sqlite`, rendered by
`optimlab.report.sweep.render(DIR)`) or a comparison (`summary.json`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from optimlab import report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", type=Path, help="a folder written by compare or sweep")


def run(args: argparse.Namespace) -> int:
    out: Path = args.dir
    if (out / "sweep.sqlite").is_file():
        render = importlib.import_module("optimlab.report.sweep").render
    elif (out / "summary.json").is_file():
        render = report.render
    else:
        print(f"optimlab report: error: invalid DIR {str(out)!r}: it holds neither summary.json "
              "(a compare folder) nor sweep.sqlite (a sweep folder)", file=sys.stderr)
        return 2
    try:
        path = render(out)
    except (ValueError, OSError) as e:
        print(f"optimlab report: error: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
