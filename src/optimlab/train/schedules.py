"""Learning-rate schedules: torch's `lr_scheduler` classes, named by a short spec string.

A schedule multiplies each param group's η by a factor f(t) at optimizer step t (from 1):

| spec | f(t) | torch class |
|---|---|---|
| ``constant`` | 1 | none |
| ``inv-sqrt`` | 1/√t (Kingma & Ba's α_t = α/√t) | ``LambdaLR`` |
| ``step:EVERY:GAMMA`` | GAMMA^⌊(t−1)/EVERY⌋ | ``StepLR`` |
| ``cosine`` | (1 + cos(π(t−1)/T))/2, T = the run's steps | ``CosineAnnealingLR`` |
| ``warmup:N`` | t/N for t ≤ N, then 1 | ``LinearLR`` |

The scheduler is stepped once after every optimizer step, so the factor in force at
step t is the scheduler's value after t − 1 calls. The spec string is what configs
and records keep; `canonical` gives its one spelling.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, LRScheduler, StepLR

SCHEDULES = ("constant", "inv-sqrt", "step:EVERY:GAMMA", "cosine", "warmup:N")
ALLOWED = ("constant, inv-sqrt, cosine, step:EVERY:GAMMA (integer EVERY >= 1, "
           "0 < GAMMA <= 1), warmup:N (integer N >= 2)")


def _error(spec: Any) -> ValueError:
    return ValueError(f"Invalid schedule: {spec!r}; allowed: {ALLOWED}")


def _int(text: str, least: int, spec: str) -> int:
    if not text.strip().isdigit() or int(text) < least:
        raise _error(spec)
    return int(text)


def parse(spec: Any) -> tuple[str, tuple[float, ...]]:
    """(name, parameters) of a spec string, or a ValueError naming it and what is allowed."""
    if not isinstance(spec, str):
        raise _error(spec)
    name, *args = spec.strip().split(":")
    if name in ("constant", "inv-sqrt", "cosine") and not args:
        return name, ()
    if name == "step" and len(args) == 2:
        every = _int(args[0], 1, spec)
        try:
            gamma = float(args[1])
        except ValueError:
            raise _error(spec) from None
        if not (math.isfinite(gamma) and 0 < gamma <= 1):
            raise _error(spec)
        return name, (every, gamma)
    if name == "warmup" and len(args) == 1:
        return name, (_int(args[0], 2, spec),)
    raise _error(spec)


def canonical(spec: str) -> str:
    """The one spelling of `spec` (``step:1000:0.1``, not ``step: 1000:1e-1``)."""
    name, args = parse(spec)
    return ":".join([name, *(f"{a:g}" for a in args)])


def build(spec: str, optimizer: torch.optim.Optimizer, steps: int) -> LRScheduler | None:
    """The scheduler of `spec` over `optimizer` for a run of `steps` steps (None: constant)."""
    name, args = parse(spec)
    if name == "constant":
        return None
    if name == "inv-sqrt":
        # LambdaLR calls the function with the number of scheduler steps taken: t − 1.
        return LambdaLR(optimizer, lambda calls: 1.0 / math.sqrt(calls + 1))
    if name == "step":
        return StepLR(optimizer, step_size=int(args[0]), gamma=args[1])
    if name == "cosine":
        return CosineAnnealingLR(optimizer, T_max=steps, eta_min=0.0)
    warm = int(args[0])
    return LinearLR(optimizer, start_factor=1.0 / warm, end_factor=1.0, total_iters=warm - 1)


def factors(spec: str, steps: int) -> list[float]:
    """f(1), …, f(steps): the factor each step's η is multiplied by, read from torch's
    scheduler driving a throwaway optimizer with η = 1."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = build(spec, optimizer, steps)
    out = []
    for _ in range(steps):
        out.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return out
