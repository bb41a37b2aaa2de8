"""One progress display for long work (sweeps, `compare --tune`): steps done out of
planned, elapsed and remaining time, and shards when the executor has them (Ray)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def steps_display(console: Console, label: str) -> Iterator[tuple[Callable[[Any], None], Console]]:
    """(show, console): `show(progress)` takes an executor's Progress (steps_done, steps,
    shards_done, shards); print through `console` so lines appear above the bar.

    The bar is drawn when `show` is called (the executors call it a few times a second),
    never by a refresh thread of its own: on a machine with as many cores as torch has
    threads, a third thread waking up ten times a second preempts a torch worker in the
    middle of a parallel op, and the others wait for it at the op's end."""
    columns = (TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, auto_refresh=False) as bar:
        steps = bar.add_task(label, total=None)
        shards: list[TaskID] = []

        def show(p: Any) -> None:
            if p.shards and not shards:
                shards.append(bar.add_task("shards", total=p.shards))
            if shards:
                bar.update(shards[0], completed=p.shards_done, total=p.shards)
            bar.update(steps, completed=p.steps_done, total=p.steps)
            bar.refresh()

        yield show, bar.console
