"""Lab policy: what the lab does with each optimizer when the user does not say.

These are choices of the lab, not facts of the optimizers, so they live here, keyed by
the specification's name; an optimizer absent from a table falls back to what its
specification says, so a newly registered optimizer works in compare and sweep with no
edit here.
"""

from __future__ import annotations

import os

from optimlab.optim import SPECS

# compare's one-shot η, the best of a measured grid (CNN on MNIST-1D, 2000 steps, batch
# 100, seeds 0-1; docs/lab.md). Plain SGD needs a large η (0.5 oscillates, 0.1 is slow).
# EMA Momentum takes steps of SGD's scale at the same η but averages the noise away, so it
# tolerates 0.5. RMSprop and Adam normalise the step to ≈ η per weight, so 1e-2 (the
# MNIST-1D paper's Adam η) is best for both; 1e-3 is far too slow in this budget. Others:
# their class default.
COMPARE_LR = {"sgd": 0.2, "momentum": 0.5, "rmsprop": 1e-2, "adam": 1e-2, "adamw": 1e-2}

# The grid of η when neither the flags nor the TOML file give one: 1e-4 … 1 in half decades,
# wide enough for SGD (best near 0.1–0.5) and Adam (best near 1e-3–1e-2) alike.
DEFAULT_LR_GRID = "1e-4:1:9"

# Hyperparameters a sweep's grid keys do not vary although the batched update could:
# SGD's optional heavy-ball momentum would turn it into another method (a per-optimizer
# TOML grid can still set it).
NOT_SWEPT = {"sgd": ("momentum",)}


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity, which a container or `taskset`
    narrows (`os.cpu_count` counts the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity masks
        return os.cpu_count() or 1


def default_threads(executor: str) -> int:
    """torch threads when --threads is not given, for runs trained by `executor`.

    The vectorized executor trains its groups side by side, one core and one torch thread
    each, so every core helps, and a member's result is the same in any group (the
    lecture's 32-configuration MLP sweep on 2 cores and on one: docs/performance.md,
    'Behind the code'). The other executors train one run per torch thread, and these
    small models lose to a second intra-op thread (the CNN's step: docs/lab.md,
    'Threads'), which also changes float32 rounding; `processes` spreads runs
    over the cores by itself, and a Ray task takes --threads CPUs of its node."""
    return usable_cores() if executor == "vectorized" else 1


def compare_lr(name: str) -> float:
    """compare's η for optimizer `name`."""
    return COMPARE_LR.get(name, SPECS[name].defaults["lr"])


def swept(name: str) -> tuple[str, ...]:
    """The grid keys that apply to optimizer `name` (a pair as its two names: beta1, beta2).

    Those its batched update takes per member (the vectorized executor can run every grid
    point), else every numeric hyperparameter.
    """
    spec = SPECS[name]
    keys = spec.batched.per_member if spec.batched is not None else tuple(
        k for k, v in spec.hyperparameters.items() if not isinstance(spec.defaults[k], bool))
    return tuple(k for k in spec.flat_keys(keys) if k not in NOT_SWEPT.get(name, ()))


def grid_keys() -> dict[str, tuple[str, ...]]:
    """Grid key -> the optimizers it applies to, "lr" first."""
    applies: dict[str, list[str]] = {"lr": []}
    for name in SPECS:
        for key in swept(name):
            applies.setdefault(key, []).append(name)
    return {k: tuple(v) for k, v in applies.items()}


# compare's η per optimizer (derived)
DEFAULT_LR = {name: compare_lr(name) for name in SPECS}
# grid key -> the optimizers that have it (derived)
APPLIES = grid_keys()
