"""The `optimlab` command. Thin: each subcommand lives in `optimlab.commands.<name>`,
which defines `add_arguments(parser)` and `run(args) -> int`; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys

DESCRIPTION = (
    "SGD, Momentum, RMSprop and Adam written from scratch, and a lab that trains models "
    "with each of them to compare curves, speed and accuracy."
)

# name -> one-line help; modules are imported only when their command runs.
COMMANDS = {
    "compare": "train each optimizer on a dataset; curves, table and an HTML report",
    "report": "re-render the figures and report.html of a compare or sweep folder",
    "landscape": "optimizer paths on 2-D test functions: paths.json, PNG, animated HTML",
    "sweep": "hyperparameter grids per optimizer, K configurations at once; resumable",
    "sweep-bench": "time a 32-configuration sweep, vectorized vs sequential (JSON)",
    "bench": "time every optimizer implementation against torch.optim, side by side (JSON)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optimlab", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_ in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(f"optimlab.commands.{name.replace('-', '_')}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"optimlab.commands.{args.command.replace('-', '_')}")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
