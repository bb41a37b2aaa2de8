"""The records of a run: its curves (long format) and its summary, both plain data.

The summary is a pure function of (config, curves, timings), so that the sweep,
which trains K configurations at once, builds records identical to single runs.

Step numbering: step 0 is the initial model; step t is after t optimizer updates.
A "batch" row at step t holds the loss of minibatch t, computed before update t.
Time to target is in steps (fractional: interpolated linearly between the evaluations
around the crossing) and in examples seen (steps x batch size); its wall-clock cost is the
optimizer's seconds per step times those steps.
A run whose minibatch loss is NaN/Inf at step t stops there: the record says
`diverged: true, diverged_step: t`, `steps: t - 1`, and the final evaluation is of
the model after t - 1 updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optimlab.analysis.records import CurvePoint, family, finite_or_none
from optimlab.train.config import TrainConfig

# the record types live in the torch-free analysis layer; their names here are kept for
# the code that imports them from the training package
__all__ = ["CurvePoint", "RunResult", "Timings", "family", "finite_or_none", "summary_record"]


@dataclass(frozen=True)
class Timings:
    train_seconds: float  # forward + backward + optimizer step, summed over steps
    optimizer_seconds: float  # the part spent inside optimizer.step()


@dataclass
class RunResult:
    config: TrainConfig
    record: dict[str, Any]  # summary_record(config, curves, timings)
    curves: list[CurvePoint]
    extras: dict[str, Any] = field(default_factory=dict)  # callback name -> callback.result()


def _series(curves: list[CurvePoint], split: str, metric: str) -> list[CurvePoint]:
    return [p for p in curves if p.split == split and p.metric == metric]


def _last(points: list[CurvePoint]) -> float | None:
    return finite_or_none(points[-1].value) if points else None


def _crossing(points: list[CurvePoint], target: float, lower_is_better: bool
              ) -> tuple[Any, Any]:
    """(step, train_seconds) where the metric first reaches `target`, interpolated linearly
    between the last evaluation short of it and the first that reaches it: the crossing is
    placed within the evaluation interval, not rounded up to its end. (None, None): never."""
    before = None
    for p in points:
        if (p.value <= target) if lower_is_better else (p.value >= target):
            if before is None or not math.isfinite(before.value):
                return float(p.step), p.train_seconds
            share = (target - before.value) / (p.value - before.value)
            return (before.step + share * (p.step - before.step),
                    before.train_seconds + share * (p.train_seconds - before.train_seconds))
        before = p
    return None, None


def _time_to_target(curves: list[CurvePoint], config: TrainConfig) -> tuple[Any, Any]:
    """(step, train_seconds) at which val accuracy reaches target_acc (or, given
    target_loss, val loss reaches target_loss), interpolated between evaluations."""
    if config.target_loss is not None:
        return _crossing(_series(curves, "val", "loss"), config.target_loss, True)
    if config.target_acc is not None:
        return _crossing(_series(curves, "val", "acc"), config.target_acc, False)
    return None, None


def summary_record(config: TrainConfig, curves: list[CurvePoint], timings: Timings
                   ) -> dict[str, Any]:
    """The summary.json record of one run (JSON-able: non-finite numbers become null)."""
    batch = _series(curves, "batch", "loss")
    diverged_step = next((p.step for p in batch if not math.isfinite(p.value)), None)
    steps = diverged_step - 1 if diverged_step is not None else (batch[-1].step if batch else 0)
    test_acc = [p.value for p in _series(curves, "test", "acc") if math.isfinite(p.value)]
    target_step, target_s = _time_to_target(curves, config)
    secs = timings.train_seconds
    return {
        **config.to_dict(),
        "steps_planned": config.steps,
        "steps": steps,
        "final_test_acc": _last(_series(curves, "test", "acc")),
        "best_test_acc": max(test_acc) if test_acc else None,
        "final_val_acc": _last(_series(curves, "val", "acc")),
        "final_train_acc": _last(_series(curves, "train", "acc")),
        "final_train_loss": _last(_series(curves, "train", "loss")),
        "final_val_loss": _last(_series(curves, "val", "loss")),
        "final_test_loss": _last(_series(curves, "test", "loss")),
        "train_seconds": secs,
        "steps_per_s": steps / secs if secs > 0 else None,
        "optimizer_ms_per_step": 1e3 * timings.optimizer_seconds / steps if steps else None,
        "time_to_target_step": target_step,
        "time_to_target_examples": None if target_step is None else
        target_step * config.batch_size,
        # the wall-clock cost of those steps: the optimizer's own time, free of evaluation
        # spacing and of the model's; the training clock at the crossing is kept beside it
        "time_to_target_optimizer_s": None if target_step is None or not steps else
        timings.optimizer_seconds / steps * target_step,
        "time_to_target_s": target_s,
        "diverged": diverged_step is not None,
        "diverged_step": diverged_step,
    }
