"""The `optimlab` command. Thin: each subcommand lives in `optimlab.commands.<name>`,
which defines `add_arguments(parser)` and `run(args) -> int`; this file only dispatches.

Only the command named on the command line is imported (for its flags and its run):
`optimlab --help` imports no command, hence neither torch nor matplotlib."""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from optimlab._dynamo import eager_until_dynamo

DESCRIPTION = (
    "The lecture's SGD, Momentum, RMSprop and Adam, and more optimizers, written from "
    "scratch, and a lab that trains models with each of them to compare curves, speed and "
    "accuracy."
)

# name -> one-line help; modules are imported only when their command runs.
COMMANDS = {
    "compare": "train each optimizer on a dataset; curves, table and an HTML report",
    "report": "re-render report.html and its figures of a compare, sweep or landscape folder",
    "export": "a compare or sweep folder as TensorBoard event files, or its curves as CSV",
    "landscape": "optimizer paths on 2-D test functions: paths.json, PNG, animated HTML",
    "sweep": "hyperparameter grids per optimizer, K configurations at once; resumable",
    "sweep-bench": "time a 32-configuration sweep, vectorized vs sequential (JSON)",
    "bench": "time every optimizer implementation against torch.optim, side by side (JSON)",
    "reproduce": "re-run published results (Adam, MNIST-1D, Wilson et al.) with a verdict",
    "suite": "every optimizer on a set of workloads: performance profiles, size claims",
}


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line, `optimlab CMD: error: ...`, exit 2 (no usage block; -h has it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _module(name: str) -> Any:
    return importlib.import_module(f"optimlab.commands.{name.replace('-', '_')}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser, with the flags of the command named in `argv` (if any) only."""
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = _Parser(prog="optimlab", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_ in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:
            _module(name).add_arguments(p)
            parser.set_defaults(parser_of_command=p)
    return parser


@contextmanager
def _imports_kept(process: bool) -> Iterator[None]:
    """With `process` (main runs as the process's command): no garbage collection while
    the command's modules import (imports make no garbage; torch's import alone set off
    three full collections: docs/performance.md, 'Behind the code'), and what they made
    (torch: about a million objects, alive until the process ends) moved out of the
    collector's view after, so that the full collections that a sweep's curves set off
    scan only what the run made. And torch.optim's first `zero_grad` or `add_param_group`
    does not import torch._dynamo unless something else has
    (`optimlab._dynamo.eager_until_dynamo`; its cost: docs/performance.md, 'Fixed costs')."""
    if not process:  # called from Python (tests, notebooks): the caller's collector
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        # back in view at exit, so that the interpreter's last collection frees them as it
        # would have (extension modules check for leaks when they unload: triton's did,
        # printing a page of "leaked function" lines at the end of every command)
        atexit.register(gc.unfreeze)
        gc.enable()
        eager_until_dynamo()


def main(argv: list[str] | None = None) -> int:
    process, argv = argv is None, sys.argv[1:] if argv is None else list(argv)
    with _imports_kept(process):
        args, unknown = build_parser(argv).parse_known_args(argv)
        if unknown:  # said by the command's parser, so the message names the command
            args.parser_of_command.error(f"unrecognized arguments: {' '.join(unknown)}")
        module = _module(args.command)
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a cluster pre-empting the job) stops as Ctrl-C does: finished runs are
        # kept and the command says how to resume
        signal.signal(signal.SIGTERM, _terminated)
    try:
        return int(module.run(args) or 0)
    except _Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so cleanup runs as for Ctrl-C."""


def _terminated(signum: int, frame: Any) -> None:
    raise _Terminated


if __name__ == "__main__":
    raise SystemExit(main())
