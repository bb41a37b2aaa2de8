"""Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018, the rungs of Hyperband)
inside a sweep: stop the weak configurations early, keep training the strong ones.

Rungs sit at R, R·η, R·η², … below the runs' last step (R: `min_steps`). At each rung,
per optimizer entry, the configurations still training are ranked on validation, as the
sweep selects: a configuration (one hyperparameter point) scores the mean over its seeds
of its validation accuracy at the rung, ties to the lower mean validation loss
(regression: the lower loss alone); one with a seed that diverged ranks last, and so does
one without a validation score. The best ceil(n/η) of the n go on, at least one; the
rest stop there. Ties of every score fall to the point's text, so the same scores always
give the same decision.

The decision is a pure function of the scores at the rung (`decide`): the driver takes it
between rungs, whatever trained the runs, so every executor decides alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


def rung_steps(min_steps: int, eta: int, steps: int) -> tuple[int, ...]:
    """R, R·η, R·η², … while below `steps` (the last step is no rung: every run left ends)."""
    out, step = [], min_steps
    while step < steps:
        out.append(step)
        step *= eta
    return tuple(out)


@dataclass(frozen=True)
class RungScore:
    """One run's standing at a rung: its optimizer entry, its point (the hyperparameters),
    its validation accuracy and loss there (None: not measured or not finite), and whether
    it diverged (a seed of the point that diverged before the rung counts as one)."""

    optimizer: str
    hyperparameters: dict[str, Any]
    val_acc: float | None
    val_loss: float | None
    diverged: bool = False


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)  # type: ignore[arg-type]


def _order(point: dict[str, Any]) -> tuple[Any, ...]:
    """The sort key of a configuration: diverged last, then accuracy down, loss up, text."""
    acc, loss = point["val_acc"], point["val_loss"]
    return (point["diverged"] or loss is None,
            -acc if acc is not None else math.inf, loss if loss is not None else math.inf,
            point["point"])


def decide(step: int, eta: int, scores: list[RungScore]) -> list[dict[str, Any]]:
    """The decision at rung `step`: per optimizer entry, its configurations ranked (rank 1
    is the best) and the best ceil(n/η) kept. One dict per configuration: "rung",
    "optimizer", "hyperparameters", "rank", "val_acc" and "val_loss" (means over its seeds),
    "diverged", "survives"."""
    by_entry: dict[str, dict[str, dict[str, Any]]] = {}  # optimizer -> point text -> point
    for s in scores:
        text = json.dumps(s.hyperparameters, sort_keys=True)
        p = by_entry.setdefault(s.optimizer, {}).setdefault(text, {
            "optimizer": s.optimizer, "hyperparameters": s.hyperparameters, "point": text,
            "accs": [], "losses": [], "diverged": False})
        p["accs"].append(s.val_acc)
        p["losses"].append(s.val_loss)
        p["diverged"] = p["diverged"] or s.diverged
    out = []
    for name, points in by_entry.items():
        ranked = sorted(({**p, "val_acc": _mean(p["accs"]), "val_loss": _mean(p["losses"])}
                         for p in points.values()), key=_order)
        kept = max(1, math.ceil(len(ranked) / eta))
        out += [{"rung": step, "optimizer": name, "hyperparameters": p["hyperparameters"],
                 "rank": rank, "val_acc": p["val_acc"], "val_loss": p["val_loss"],
                 "diverged": p["diverged"], "survives": rank <= kept}
                for rank, p in enumerate(ranked, 1)]
    return out


