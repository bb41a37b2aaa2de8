"""Performance profiles over a suite of workloads: pure functions of steps to target.

For workload w and optimizer o, t(w, o) is the number of steps o took to reach w's target
(interpolated between evaluations; None: not reached). The performance ratio is
r(w, o) = t(w, o) / min_o' t(w, o'), and the profile of o is

    rho_o(tau) = |{w : r(w, o) <= tau}| / |W|,   tau >= 1,

the share of workloads that o solves within tau times the best optimizer's steps
(Dolan & Moré 2002). A target not reached is an infinite ratio: it never counts, at any
tau, and never enters a mean. rho_o(1) is the share of workloads o wins (ties count for
every tied optimizer); rho_o(tau) for large tau the share it solves at all.

`score` is AlgoPerf's summary (Dahl et al. 2023): the profile's mean height over
tau in [1, tau_max], normalized so that an optimizer best on every workload scores 1.

References:
- Dolan, E. D., Moré, J. J. (2002). Benchmarking optimization software with performance
  profiles. Mathematical Programming 91, 201-213.
- Dahl, G. E. et al. (2023). Benchmarking Neural Network Training Algorithms.
  arXiv:2306.07179 (AlgoPerf).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# AlgoPerf integrates the profiles up to tau = 4: slower than that counts as not solved.
TAU_MAX = 4.0
# Steps to target per workload and optimizer (None: not reached); ratios alike.
Table = Mapping[str, Mapping[str, float | None]]


def median_steps(seeds: Sequence[float | None]) -> float | None:
    """The median over seeds of steps to target, a seed that did not reach counting as
    slower than any that did; None (not reached) when the median falls on such a seed."""
    if not seeds:
        return None
    ordered = sorted(seeds, key=lambda s: math.inf if s is None else s)
    middle = ordered[(len(ordered) - 1) // 2: len(ordered) // 2 + 1]
    if any(s is None for s in middle):
        return None
    return float(sum(middle)) / len(middle)  # type: ignore[arg-type]


def ratios(steps: Table) -> dict[str, dict[str, float | None]]:
    """r(w, o) = t(w, o) / the best t on w (None: not reached); a ValueError names a
    workload whose best is 0 steps (its target is met before training: no ratio exists)."""
    out: dict[str, dict[str, float | None]] = {}
    for workload, by_optimizer in steps.items():
        reached = [s for s in by_optimizer.values() if s is not None]
        best = min(reached, default=None)
        if best is not None and best <= 0:
            raise ValueError(f"Invalid target of workload {workload!r}: reached at step "
                             f"{best:g}, before training; allowed: a target the initial "
                             "model does not reach")
        out[workload] = {o: None if s is None or best is None else s / best
                         for o, s in by_optimizer.items()}
    return out


def optimizers_of(table: Table) -> list[str]:
    """Every optimizer named in `table`, in order of first appearance."""
    return list(dict.fromkeys(o for row in table.values() for o in row))


def profile(table: Table, taus: Sequence[float]) -> dict[str, list[float]]:
    """rho_o(tau) for each optimizer of the ratio `table` at each tau; a workload where an
    optimizer has no entry counts as not solved by it."""
    n = len(table)
    return {o: [sum(1 for row in table.values() if _within(row.get(o), tau)) / n if n else 0.0
                for tau in taus] for o in optimizers_of(table)}


def _within(ratio: float | None, tau: float) -> bool:
    return ratio is not None and ratio <= tau


def breakpoints(table: Table, tau_max: float = TAU_MAX) -> list[float]:
    """The taus where some profile steps up (every finite ratio), with 1 and `tau_max`:
    the profiles are constant between consecutive ones."""
    finite = {r for row in table.values() for r in row.values() if r is not None}
    return sorted({1.0, float(tau_max), *finite})


def score(table: Table, tau_max: float = TAU_MAX) -> dict[str, float]:
    """The mean of rho_o over tau in [1, tau_max]: exactly, as rho is a step function, each
    workload solved at ratio r <= tau_max adds (tau_max - r) / (tau_max - 1) / |W|."""
    if not tau_max > 1:
        raise ValueError(f"Invalid tau_max: {tau_max!r}; allowed: a number > 1")
    n = len(table)
    return {o: sum((tau_max - r) / (tau_max - 1) for row in table.values()
                   if (r := row.get(o)) is not None and r <= tau_max) / n if n else 0.0
            for o in optimizers_of(table)}
