"""Argument types and the `--threads` rule that several commands share, so that a bad value
reads the same in each: `argument --FLAG: VALUE; allowed: ...`, exit 2 (argparse's)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from optimlab.lab.policy import usable_cores


def _integer(text: str, low: int, why: str = "") -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: an integer >= {low}{why}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1)


def natural_int(text: str) -> int:
    """An integer >= 0 (flags where 0 means "off" or "the default")."""
    return _integer(text, 0)


def eta(text: str) -> int:
    """Successive halving's η: an integer >= 2 (η = 1 would stop nothing)."""
    return _integer(text, 2, " (the rungs' ratio η: 1/η of the configurations go on)")


def number(text: str) -> float:
    """A finite float; the command checks its range, naming the flag."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: a finite number")
    return value


def add_threads(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help=f"torch CPU threads, at most the cores this process may use "
                        f"({usable_cores()} here; more are capped with a note) "
                        f"(default {default})")


def capped(command: str, threads: int) -> int:
    """`threads`, or the cores this process may use when it asks for more: past them,
    threads only wait for each other."""
    cores = usable_cores()
    if threads <= cores:
        return threads
    print(f"optimlab {command}: note: --threads {threads} is more than the {cores} CPU cores "
          f"this process may use; using {cores}", file=sys.stderr)
    return cores


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch on `threads` threads inside, on its previous number after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
