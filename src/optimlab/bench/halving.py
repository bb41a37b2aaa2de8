"""Successive halving against the same sweep trained in full: what halving saves, and what
its pick loses.

One sample of configurations (the sweep's settings, e.g. random search's trials) is swept
twice in this process, each into an empty folder, by the sweep's executor: in full, then
with successive halving (`optimlab.lab.halving`). Per sweep: the wall clock of the whole
`Sweep.run` (store and summary included), the member-steps trained (each run's steps,
summed), and per optimizer the configuration selected on validation with its test
accuracy. The figures: halving's member-steps and wall clock as fractions of the full
sweep's, and its pick's test accuracy against the full sweep's best (on validation).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from typing import Any

from optimlab.analysis.records import member_steps
from optimlab.analysis.selection import grid_keys, point_value
from optimlab.bench.sweep import timed_sweep
from optimlab.lab.grid import SweepConfig


def _swept(cfg: SweepConfig, dataset: Any) -> dict[str, Any]:
    """One sweep of `cfg` into a fresh folder: its clock, member-steps and picks."""
    with tempfile.TemporaryDirectory(prefix="optimlab-halving-bench-") as out:
        wall, sweep, records = timed_sweep(cfg, out, dataset)
    by_run = {r["run"]: r for r in records}
    picks = {}
    for name, chosen in sweep.selected.items():
        record = by_run.get(chosen["run"]) if chosen["run"] else None
        picks[name] = None if record is None else {
            "hyperparameters": chosen["hyperparameters"], "run": chosen["run"],
            "val_acc": record["final_val_acc"], "test_acc": record["final_test_acc"]}
    return {"wall_s": wall, "member_steps": member_steps(records),
            "runs": len(records), "picked": picks}


def run_halving_bench(cfg: SweepConfig, dataset: Any,
                      progress: Callable[[str], None] = lambda what: None) -> dict[str, Any]:
    """`cfg` (with `halving`) against the same sweep without it; the figures, as JSON."""
    assert cfg.halving is not None
    full_cfg = dataclasses.replace(cfg, halving=None, min_steps=None)
    progress("the full sweep")
    full = _swept(full_cfg, dataset)
    progress(f"the sweep with --halving {cfg.halving}")
    halved = _swept(cfg, dataset)
    quality = {}
    for name, best in full["picked"].items():
        pick = halved["picked"].get(name)
        quality[name] = None if best is None or pick is None else {
            "same_configuration": pick["hyperparameters"] == best["hyperparameters"],
            "test_acc_points_vs_best": 100 * (pick["test_acc"] - best["test_acc"])}
    return {"settings": {"eta": cfg.halving, "first_rung": cfg.first_rung,
                         "steps": cfg.steps, "trials": cfg.trials, "executor": cfg.executor,
                         "model": cfg.model, "optimizers": list(cfg.labels)},
            "full": full, "halving": halved,
            "member_steps_fraction": halved["member_steps"] / full["member_steps"],
            "wall_fraction": halved["wall_s"] / full["wall_s"], "pick_quality": quality}


def _point_text(hp: dict[str, Any]) -> str:
    return ", ".join(f"{k}={point_value(hp, k):.3g}" for k in grid_keys(hp))


def format_halving(result: dict[str, Any]) -> str:
    """The figures, a few lines for people."""
    s, full, halved = result["settings"], result["full"], result["halving"]
    lines = [f"successive halving (η={s['eta']}, first rung {s['first_rung']}) against the "
             f"same {full['runs']} runs in full, {s['model']}, {s['steps']} steps, executor "
             f"{s['executor']}:",
             f"  member-steps: {halved['member_steps']:,} of {full['member_steps']:,} "
             f"({result['member_steps_fraction']:.1%})",
             f"  wall clock:   {halved['wall_s']:.1f} s of {full['wall_s']:.1f} s "
             f"({result['wall_fraction']:.1%})"]
    for name, q in result["pick_quality"].items():
        pick, best = halved["picked"][name], full["picked"][name]
        if q is None:
            lines.append(f"  {name}: no pick (every configuration diverged)")
            continue
        verdict = "the same configuration" if q["same_configuration"] else \
            f"{q['test_acc_points_vs_best']:+.2f} points of test accuracy against it"
        lines.append(f"  {name}: picks {_point_text(pick['hyperparameters'])}, test acc "
                     f"{pick['test_acc']:.2%}; the full sweep's best "
                     f"{_point_text(best['hyperparameters'])}, test acc {best['test_acc']:.2%}"
                     f": {verdict}")
    return "\n".join(lines)
