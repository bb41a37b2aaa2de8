"""`compare --tune`: every optimizer tuned with the same budget before it is compared.

Each entry gets `trials` random-search trials (`optimlab.lab.search`) over its whole
declared search space (its specification's `search`: log-uniform η and ε, log-uniform
1 - β; Choi et al. 2019), each trial as long as a comparison run, under seed 0, so every
entry's budget is the same trials × steps (Sivaprasad et al. 2020). Selection is on
validation (`optimlab.analysis.selection`); the comparison then runs the chosen point
under every seed and reports test. What the user fixed stays fixed: an entry's own
hyperparameters and its --lr are held out of its search (and an entry with nothing left
to search is not tuned: its budget is 0, which the audit flags).

The trials are stored as a sweep (`optimlab.lab.sweep.Sweep`) in the comparison's
`tune/` folder: the same command resumes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optimlab.lab.audit import declared_keys, grid_runs, tuned_row, untuned
from optimlab.lab.compare import CompareConfig
from optimlab.lab.entries import Entry, with_label
from optimlab.lab.experiment import Experiment
from optimlab.lab.grid import SweepConfig, applies
from optimlab.lab.sweep import Sweep
from optimlab.train.config import check_positive_int

# Trials per optimizer: 8 runs of the comparison's length, fewer than the 9-value η grid
# that tuning swept before (32 runs against 36 for the four lecture optimizers, as one
# vectorized job), so `compare --tune` takes no longer than it did.
DEFAULT_TUNE_TRIALS = 8


def pinned(cfg: CompareConfig, entry: Entry) -> Entry:
    """The entry with what the user fixed in its hyperparameters: its own, and its --lr."""
    given = {"lr": cfg.lr[entry.label]} if entry.label in cfg.lr else {}
    return Entry(entry.name, {**given, **entry.hyperparameters}, entry.label)


def searchable(entry: Entry) -> bool:
    """Whether any key of the entry's declared search space is left to tune."""
    return any(applies(k, entry) for k in declared_keys(entry))


def tuning_sweep(cfg: CompareConfig, out: str | Path, trials: int = DEFAULT_TUNE_TRIALS, *,
                 dataset: Any = None) -> Sweep | None:
    """`compare --tune`'s sweep, set up and checked (nothing trained): `trials` random
    trials per entry with something to tune, with the comparison's data (`dataset`: already
    loaded), model and steps, stored in `out`; None when no entry has anything left to
    tune."""
    if cfg.val_fraction == 0:
        raise ValueError(f"Invalid --tune with --val-fraction {cfg.val_fraction:g}: tuning "
                         "selects on the validation split; allowed: --val-fraction > 0")
    check_positive_int("--tune-trials", trials)
    entries = [p for p in map(lambda e: pinned(cfg, e), cfg.entries) if searchable(p)]
    if not entries:
        return None
    common = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Experiment)}
    return Sweep(SweepConfig(**common | {"seeds": 1, "optimizers": tuple(
        with_label(e, e.hyperparameters) for e in entries)}, grid={}, search="random",
        trials=trials), out, command=f"compare --tune --tune-trials {trials}", dataset=dataset)


def tune(cfg: CompareConfig, sweep: Sweep | None,
         on_progress: Callable[[Any], None] | None = None
         ) -> tuple[CompareConfig, dict[str, dict[str, Any]]]:
    """Run `sweep` (see `tuning_sweep`); `cfg` with each entry at the point chosen on
    validation, and the tuning table (see `optimlab.lab.audit`), its budgets counted from
    the stored trials. An entry not searched, or whose every trial diverged, keeps its η
    (--lr, its own, or the lab's default). `on_progress`: the sweep's steps as it goes."""
    if sweep is not None:
        sweep.run(on_progress=on_progress)
    runs = sweep.finished if sweep is not None else []
    table, entries = {}, []
    for e in cfg.entries:
        lr, source = cfg.hyperparameters(e)["lr"], cfg.lr_source(e)
        chosen = sweep.selected.get(e.label) if sweep is not None else None
        row = tuned_row(e, grid_runs(runs, e.label), chosen, source) if chosen else \
            untuned(e, lr, source)
        if row["hyperparameters"] is None:
            row["lr"] = lr
        table[e.label] = row
        entries.append(with_label(e, row["hyperparameters"]) if row["hyperparameters"]
                       else e.text)
    return dataclasses.replace(cfg, optimizers=tuple(entries)), table


def tuned(cfg: CompareConfig, out: str | Path, trials: int = DEFAULT_TUNE_TRIALS, *,
          dataset: Any = None) -> tuple[CompareConfig, dict[str, dict[str, Any]]]:
    """`cfg` with each entry tuned on validation, and the tuning table: `tuning_sweep`,
    then `tune` (the command runs the two apart, to show the sweep between them)."""
    return tune(cfg, tuning_sweep(cfg, out, trials, dataset=dataset))

