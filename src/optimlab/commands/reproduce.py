"""`optimlab reproduce`: list the published results we re-run, or run one with its verdict.

Bad values stop with exit code 2 and a message naming the argument, its value and what
is allowed.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from rich.console import Console
from rich.table import Table

from optimlab.commands._args import add_threads, capped, torch_threads
from optimlab.lab import reproduce
from optimlab.lab.experiment import output_folder


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME",
                   help=f"the experiment: {', '.join(reproduce.EXPERIMENTS)}")
    p.add_argument("--list", action="store_true",
                   help="name each experiment, its source and what the source reports")
    p.add_argument("--full", action="store_true",
                   help="the source's budget (default: a reduced one, about a minute)")
    p.add_argument("--data-dir", help="folder with the dataset's files (MNIST)")
    p.add_argument("--download", action="store_true",
                   help="download missing dataset files (full MNIST for adam-logreg-mnist)")
    p.add_argument("--out", help="output folder; the same folder resumes "
                                 "(default runs/reproduce-NAME-<timestamp>)")
    # One thread, as compare's runs: the models are small, and a shared 2-core machine runs
    # them fastest with one (see optimlab.lab.policy.default_threads).
    add_threads(p, "1")


def _list(console: Console) -> int:
    table = Table(title="optimlab reproduce: experiments", show_lines=True)
    for column in ("name", "source", "what the source reports"):
        table.add_column(column)
    for e in reproduce.EXPERIMENTS.values():
        table.add_row(e.name, e.source, e.reports)
    console.print(table)
    return 0


def _error(message: str) -> int:
    print(f"optimlab reproduce: error: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace, console: Console) -> int:
    if args.name is None:
        return _error("NAME is missing; allowed: --list, or one of "
                      f"{', '.join(reproduce.EXPERIMENTS)}")
    if args.name not in reproduce.EXPERIMENTS:
        return _error(f"Invalid NAME {args.name!r}; allowed: "
                      f"{', '.join(reproduce.EXPERIMENTS)}")
    try:
        out = output_folder(args.out, f"reproduce-{args.name}")
    except (ValueError, OSError) as e:
        return _error(str(e))
    argv = ["optimlab", "reproduce", args.name, *(["--full"] if args.full else []),
            *(["--data-dir", args.data_dir] if args.data_dir else []),
            *(["--download"] if args.download else []),
            "--threads", str(args.threads), "--out", str(out)]
    console.print(f"{args.name} ({'full' if args.full else 'reduced'} budget) -> {out}")
    try:
        record = reproduce.run(args.name, out, full=args.full, data_dir=args.data_dir,
                               download=args.download, command=shlex.join(argv),
                               log=console.print)
    except (ValueError, TypeError, OSError) as e:
        return _error(str(e))
    table = Table(title=f"{args.name}: {record['verdict']}")
    for column in ("claim", "published", "ours", "holds"):
        table.add_column(column)
    for c in record["checks"]:
        table.add_row(c["claim"], c["published"], c["ours"], "yes" if c["holds"] else "NO")
    console.print(f"data: {record['data']}")
    console.print(table)
    console.print(record["verdict_line"])
    from optimlab.report.reproduce import render  # the report reads records, never trains
    console.print(f"report: {render(out)}")
    return 0


def run(args: argparse.Namespace) -> int:
    console = Console()
    console = console if console.is_terminal else Console(width=160)
    if args.list:
        return _list(console)
    args.threads = capped("reproduce", args.threads) if args.threads else 1
    with torch_threads(args.threads):
        return _run(args, console)
