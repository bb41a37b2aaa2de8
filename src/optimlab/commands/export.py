"""`optimlab export tensorboard RUN_DIR [--logdir DIR]`: a compare or sweep folder as
TensorBoard event files, one TensorBoard run per optimlab run (see
`optimlab.report.tensorboard`). Reads the records only; never trains."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=("tensorboard",), help="what to export to")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                   help="a folder written by compare or sweep")
    p.add_argument("--logdir", type=Path,
                   help="where the event files go (default RUN_DIR/tensorboard)")


def run(args: argparse.Namespace) -> int:
    from optimlab.report.tensorboard import export

    try:
        logdir, folders = export(args.run_dir, args.logdir)
    except (ImportError, ValueError, OSError) as e:
        print(f"optimlab export: error: {e}", file=sys.stderr)
        return 2
    print(f"{len(folders)} runs written to {logdir}; view them: tensorboard --logdir {logdir}")
    return 0
