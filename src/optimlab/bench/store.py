"""The driver's store: finished runs written per second (`optimlab sweep-bench --store RUNS`).

Rows, in one process, order alternating round by round, each into a new store:
- `per_run`: one commit per finished run (`Store(out)`, what compare and reproduce use);
- `batched`: the sweep's batches (`Store(out, BATCH_RUNS, BATCH_SECONDS)`).

Each round plans RUNS configurations (not timed), then times `Store.finish` of each and the
last `flush`: encoding, the JSON summary, the transactions; in wall time, and in this
process's CPU time (which the load of a shared machine inflates less: the rate one free
core would reach, the disk's waits aside). A run's curves are those of the
training loop at `steps` and `eval_every`: a float32 minibatch loss every step, and at step
0 and every `eval_every` steps loss and accuracy of train, val and test (float64: averaged);
2,054 points at the sweep's reference 2000 steps, evaluation every 250. The values are
random: the store's cost does not depend on them. Medians of the rounds.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from optimlab.bench.report import format_goals, goal
from optimlab.lab.store import Store
from optimlab.lab.sweep import BATCH_RUNS, BATCH_SECONDS
from optimlab.train import CurvePoint, TrainConfig

ROWS = {"per_run": (1, BATCH_SECONDS), "batched": (BATCH_RUNS, BATCH_SECONDS)}
# The goal: the sweep's store (batched commits) keeps up with 100 machines' runs.
STORE_GOAL = 500.0
# A summary record's fields (values made up): what a run's row holds besides its curves.
_RECORD_KEYS = ("final_train_loss", "final_val_loss", "final_test_loss", "final_train_acc",
                "final_val_acc", "final_test_acc", "best_val_acc", "train_seconds",
                "steps_per_s", "optimizer_ms_per_step", "time_to_target_s", "steps_to_target")


def curves(steps: int, eval_every: int, seed: int = 0) -> list[CurvePoint]:
    """A run's points as the training loop appends them (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    losses = rng.random(steps).astype(np.float32).tolist()
    points = []
    for step in range(steps + 1):
        if step:
            points.append(CurvePoint(step, step * 1e-3, "batch", "loss", losses[step - 1]))
        if step % eval_every == 0 or step == steps:
            points += [CurvePoint(step, step * 1e-3, split, metric, float(rng.random()))
                       for split in ("train", "val", "test") for metric in ("loss", "acc")]
    return points


def _round(batch: tuple[int, float], configs: list[TrainConfig], record: dict[str, Any],
           points: list[CurvePoint]) -> tuple[float, float]:
    """(wall, CPU) seconds to store `configs` finished, each with `record` and `points`."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, *batch)
        store.plan(configs, "grid")
        t0, c0 = time.perf_counter(), time.process_time()
        for c in configs:
            store.finish(c, record, points)
        store.flush()
        seconds = time.perf_counter() - t0, time.process_time() - c0
        store.close()
    return seconds


def store_rate(runs: int, steps: int = 2000, eval_every: int = 250, repeats: int = 3
               ) -> dict[str, Any]:
    """Finished runs stored per second by each row, medians of `repeats` interleaved
    rounds, and the batched row's speed-up over the per-run one."""
    base = TrainConfig(dataset="mnist1d", model="mlp", optimizer="adam", steps=steps,
                       eval_every=eval_every)
    configs = [dataclasses.replace(base, seed=s) for s in range(runs)]
    record = {k: 0.5 + i / 100 for i, k in enumerate(_RECORD_KEYS)}
    points = curves(steps, eval_every)
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in ROWS}
    for rnd in range(repeats):
        for name in list(ROWS)[::-1 if rnd % 2 else 1]:
            seconds[name].append(_round(ROWS[name], configs, record, points))
    rows: dict[str, dict[str, Any]] = {name: {"batch_runs": ROWS[name][0],
                   "runs_per_s": runs / statistics.median(w for w, _ in s),
                   "runs_per_cpu_s": runs / statistics.median(c for _, c in s),
                   "seconds": [w for w, _ in s], "cpu_seconds": [c for _, c in s]}
            for name, s in seconds.items()}
    return {"settings": {"runs": runs, "steps": steps, "eval_every": eval_every,
                         "curve_points": len(points), "repeats": repeats},
            "rows": rows,
            "batched_vs_per_run": rows["batched"]["runs_per_s"] / rows["per_run"]["runs_per_s"],
            "goals": [goal("the store (batched commits) ≥ 500 runs/s",
                           rows["batched"]["runs_per_s"], STORE_GOAL)]}


def format_store_rate(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"store: {s['runs']} runs of {s['steps']} steps ({s['curve_points']} curve points "
             f"each), medians of {s['repeats']} rounds"]
    lines += [f"  {name:<8} {r['runs_per_s']:>8.0f} runs/s, {r['runs_per_cpu_s']:>6.0f} per CPU "
              f"second  (commits of {r['batch_runs']})" for name, r in result["rows"].items()]
    lines.append(f"  batched ÷ per run: {result['batched_vs_per_run']:.1f}×")
    return "\n".join([*lines, *format_goals(result["goals"], "runs per second")])
