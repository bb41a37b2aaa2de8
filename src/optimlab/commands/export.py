"""`optimlab export tensorboard|csv RUN_DIR [--logdir DIR]`: a folder's records in another
format. tensorboard: event files, one TensorBoard run per optimlab run (see
`optimlab.report.tensorboard`); csv: RUN_DIR/curves.csv, long format, from the store where
a sweep or a reproduction keeps its curves compact. Reads the records only; never trains."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=("tensorboard", "csv"), help="what to export to")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                   help="a folder written by compare, sweep or reproduce")
    p.add_argument("--logdir", type=Path,
                   help="tensorboard: where the event files go (default RUN_DIR/tensorboard)")


def _csv(args: argparse.Namespace) -> str:
    from optimlab.report.records import export_csv

    if args.logdir is not None:
        raise ValueError(f"Invalid --logdir {str(args.logdir)!r} with csv: curves.csv is "
                         "written into RUN_DIR; allowed: --logdir with tensorboard only")
    path, runs = export_csv(args.run_dir)
    return f"{runs} runs' curves in {path}"


def _tensorboard(args: argparse.Namespace) -> str:
    from optimlab.report.tensorboard import export

    logdir, folders = export(args.run_dir, args.logdir)
    return f"{len(folders)} runs written to {logdir}; view them: tensorboard --logdir {logdir}"


def run(args: argparse.Namespace) -> int:
    try:
        print((_csv if args.format == "csv" else _tensorboard)(args))
    except (ImportError, ValueError, OSError) as e:
        print(f"optimlab export: error: {e}", file=sys.stderr)
        return 2
    return 0
