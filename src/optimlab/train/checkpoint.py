"""Checkpoints of runs in flight: what a run needs to go on from a step exactly as if it
had never stopped.

A checkpoint is a plain dict of tensors, numbers, strings and lists (parameters,
optimizer state, the curves so far, the clocks; the minibatch position is the step
itself, see `seeding.batch_indices`), kept as the bytes of `torch.save` and read back
with `torch.load(weights_only=True)`: nothing in it is unpickled as code. Who keeps the
bytes (the sweep's store, a compare folder) is the caller's business.

`Cadence` says when: every `EVERY_S` seconds or every `FRACTION` of the run's steps,
whichever comes first, so that an interrupt, `SIGTERM` or `kill -9` loses at most that
much of each run in flight; but a tenth reached in under `MIN_S` seconds waits for it: a
run that fast loses less than that, and checkpointing it at every tenth (a 5-step run at
every step) cost short runs a third of their CPU.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from optimlab.train.record import CurvePoint

EVERY_S = 30.0  # the most training time an interrupt may cost a run in flight
FRACTION = 0.1  # ... or this share of its steps, whichever is less,
MIN_S = 1.0  # ... once this much training time has passed
# Seconds between checkpoints instead of EVERY_S (the tests use a fraction of a second).
EVERY_S_ENV = "OPTIMLAB_CHECKPOINT_EVERY_S"


def every_s() -> float:
    """The checkpoint interval in seconds: $OPTIMLAB_CHECKPOINT_EVERY_S, else EVERY_S."""
    text = os.environ.get(EVERY_S_ENV)
    if text is None:
        return EVERY_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise ValueError(f"Invalid ${EVERY_S_ENV} {text!r}; allowed: seconds > 0")
    return value


class Cadence:
    """When a run of `steps` steps, at step `start` now, is due for its next checkpoint."""

    def __init__(self, steps: int, start: int = 0, seconds: float | None = None) -> None:
        self.steps, self.last_step = steps, start
        self.every_steps = max(1, math.ceil(steps * FRACTION))
        self.seconds = every_s() if seconds is None else seconds
        self.last_time = time.monotonic()

    def due(self, step: int) -> bool:
        """Whether to checkpoint after `step` (never after the last: the run ends there)."""
        if step >= self.steps:
            return False
        now = time.monotonic()
        elapsed = now - self.last_time
        tenth = step - self.last_step >= self.every_steps and elapsed >= MIN_S
        if not tenth and elapsed < self.seconds:
            return False
        self.last_step, self.last_time = step, now
        return True


def to_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def from_bytes(blob: bytes) -> dict[str, Any]:
    """A checkpoint's dict; tensors, numbers, strings and containers only."""
    state: dict[str, Any] = torch.load(io.BytesIO(blob), weights_only=True)
    return state


def curves_state(curves: list[CurvePoint]) -> dict[str, Any]:
    """The curves as a few tensors (float64 holds every Python float exactly): pickling
    thousands of small rows cost a checkpoint more than its parameters did."""
    series = {s: i for i, s in enumerate(dict.fromkeys((p.split, p.metric) for p in curves))}
    return {"series": [list(s) for s in series],
            "index": torch.tensor([series[p.split, p.metric] for p in curves], dtype=torch.int64),
            "step": torch.tensor([p.step for p in curves], dtype=torch.int64),
            "seconds": torch.tensor([p.train_seconds for p in curves], dtype=torch.float64),
            "value": torch.tensor([p.value for p in curves], dtype=torch.float64)}


def curves_from_state(state: dict[str, Any]) -> list[CurvePoint]:
    series = [(str(split), str(metric)) for split, metric in state["series"]]
    return [CurvePoint(step, seconds, series[i][0], series[i][1], value)
            for i, step, seconds, value in zip(
        state["index"].tolist(), state["step"].tolist(), state["seconds"].tolist(),
        state["value"].tolist(), strict=True)]


@dataclass
class Resume:
    """A run's checkpointing: `blob`, the checkpoint to go on from (None: from step 0);
    `save(step, blob)`, called with each new one; `seconds`, the interval (None: `every_s`);
    `until`, a step before the last where the run pauses: it hands its checkpoint there to
    `save` and ends without a result (successive halving decides at that step whether it
    goes on)."""

    blob: bytes | None
    save: Callable[[int, bytes], None]
    seconds: float | None = None
    until: int | None = None
