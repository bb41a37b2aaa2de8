"""`sweep`: hyperparameter grids per optimizer, many configurations as one job, resumable.

The output folder:
- `sweep.sqlite`: every run (see `optimlab.lab.store`): the source of truth, written
  after every finished run; re-running the identical sweep skips finished runs and
  re-runs unfinished ones. Other settings are refused, naming what differs; a grid that
  adds points to the stored one is accepted with `extend=True` (`--extend`);
- `summary.json`, `curves.csv`: as `compare` writes them, for all finished runs
  (rewritten from the store after each batch of runs).

Protocol with `select="val"` (DeepOBS): the grid runs under seed 0; per optimizer the
configuration with the best final validation accuracy (ties: lower validation loss;
diverged runs never win) is re-run under seeds 0..N-1 ("tuned"), and the class
defaults run under the same seeds ("one-shot"). Without it, every grid point runs
under seeds 0..N-1.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optimlab.lab.compare import CompareConfig
from optimlab.lab.environment import environment
from optimlab.lab.executors import run_processes, run_sequential, run_vectorized
from optimlab.lab.experiment import (
    CURVE_COLUMNS,
    Experiment,
    check_resume,
    differences,
    guard_disk,
    load_dataset,
    write_json,
)
from optimlab.lab.grid import (
    DEFAULT_LR_GRID,
    SweepConfig,
    hyperparameter_sets,
    one_shot,
    parse_values,
)
from optimlab.lab.store import Store, config_key
from optimlab.train import CurvePoint, RunResult, TrainConfig

# Why a run exists: a grid point, the class defaults (select="val"), a re-run of the best.
ROLES = ("grid", "one-shot", "tuned")


def make_configs(cfg: SweepConfig, optimizer: str, points: list[dict[str, Any]],
                 seeds: range, n_train: int) -> list[TrainConfig]:
    return [TrainConfig(dataset=cfg.dataset, model=cfg.model, optimizer=optimizer,
                        hyperparameters=hp, steps=cfg.steps_for(n_train),
                        batch_size=cfg.batch_size, seed=seed, eval_every=cfg.eval_every,
                        device=cfg.device, dtype=cfg.dtype, schedule=cfg.schedule)
            for seed in seeds for hp in points]


def grid_configs(cfg: SweepConfig, n_train: int) -> list[TrainConfig]:
    seeds = range(1) if cfg.select else range(cfg.seeds)
    return [c for name in cfg.optimizers
            for c in make_configs(cfg, name, hyperparameter_sets(cfg, name), seeds, n_train)]


def final_value(curves: list[CurvePoint], split: str, metric: str) -> float | None:
    """The last evaluation of `split`/`metric` (None when never evaluated or non-finite)."""
    values = [p.value for p in curves if p.split == split and p.metric == metric]
    return values[-1] if values and math.isfinite(values[-1]) else None


def best_per_optimizer(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """optimizer -> the stored run (see Store.runs) with the best validation result."""
    best: dict[str, tuple[tuple[float, float], dict[str, Any]]] = {}
    for run in runs:
        s = run["summary"]
        acc, loss = s["final_val_acc"], final_value(run["curves"], "val", "loss")
        if s["diverged"] or acc is None or loss is None:
            continue
        score = (acc, -loss)
        if s["optimizer"] not in best or score > best[s["optimizer"]][0]:
            best[s["optimizer"]] = (score, run)
    return {name: run for name, (_, run) in best.items()}


def write_outputs(store: Store) -> list[dict[str, Any]]:
    """summary.json and curves.csv of every finished run, each replaced atomically."""
    runs = store.runs()
    tmp = store.out / "curves.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CURVE_COLUMNS)
        for run in runs:
            w.writerows((run["run"], *p) for p in run["curves"])
    os.replace(tmp, store.out / "curves.csv")
    records = [run["summary"] for run in runs]
    write_json(store.out / "summary.json", records)
    return records


class Sweep:
    """A sweep set up and checked: data loaded, store opened, settings recorded."""

    def __init__(self, cfg: SweepConfig, out: str | Path, *, command: str = "",
                 dataset: Any = None, extend: bool = False) -> None:
        """`dataset`: an already loaded Dataset (tests pass tiny ones); default
        `data.load(cfg.dataset)`. Bad settings raise ValueError/TypeError/OSError here,
        and so does a folder holding a sweep with other settings (`extend`: unless they
        differ only by a grid that holds every stored grid point)."""
        ds = load_dataset(cfg, dataset)
        if cfg.select == "val" and len(ds.y_val) == 0:
            raise ValueError(f"Invalid select 'val': {cfg.dataset} has no validation split")
        self.cfg, self.dataset, self.n_train = cfg, ds, len(ds.y_train)
        self.store = Store(out)
        self._check_resume(self.store.meta().get("settings"), extend)
        with self.guard():
            self.store.set_meta("settings", dataclasses.asdict(cfg))
            self.store.set_meta("command", command)
            self.store.set_meta("dataset", ds.summary() if hasattr(ds, "summary") else ds.name)
            self.store.set_meta("environment", environment())
        self.on_result: Callable[[RunResult], None] | None = None
        self.on_progress: Callable[[Any], None] | None = None  # the Ray executor's counts

    def _check_resume(self, stored: dict[str, Any] | None, extend: bool) -> None:
        """Only the identical sweep resumes; `extend` also accepts a grid with more points."""
        if stored is None or not extend:
            return check_resume(self.store.out, stored, self.cfg, "sweep")
        grid_keys = ("grid", "per_optimizer", "optimizers")
        current = self.cfg.identity()
        rest = differences({k: v for k, v in stored.items()
                            if k not in (*grid_keys, *self.cfg.HOW)},
                           {k: v for k, v in current.items() if k not in grid_keys})
        new = {config_key(c) for c in grid_configs(self.cfg, self.n_train)}
        lost = [r["run"] for r in self.store.runs(done_only=False)
                if "grid" in r["roles"] and r["key"] not in new]
        if rest or lost:
            why = "; ".join(rest) or f"the grid leaves out stored points {', '.join(lost[:3])}"
            raise ValueError(f"Invalid --extend into {str(self.store.out)!r}: {why}; allowed: "
                             "the stored settings with a grid that adds points")

    def guard(self) -> Any:
        """Writes to the store: a full disk becomes `DiskFull` (runs safe, how to resume)."""
        return guard_disk(self.store.path, lambda: len(self.store.runs()), "sweep")

    def _finished(self, result: RunResult) -> None:
        with self.guard():
            self.store.finish(result.config, result.record, result.curves)
        if self.on_result:
            self.on_result(result)

    def execute(self, planned: dict[str, list[TrainConfig]]) -> int:
        """Plan configurations under their role ({role: configs}) and train those not
        finished, all in one executor call; returns how many ran."""
        with self.guard():
            for role, configs in planned.items():
                self.store.plan(configs, role)
        todo = self.store.unfinished(list({config_key(c): c for configs in planned.values()
                                            for c in configs}.values()))
        if todo:
            with self.guard():
                self.store.mark_running(todo)
            if self.cfg.executor == "vectorized":
                run_vectorized(todo, self.dataset, self._finished, self.cfg.max_batch)
            elif self.cfg.executor == "ray":
                from optimlab.lab.ray_executor import run_ray  # the optional extra
                run_ray(todo, self.dataset, self._finished, self.cfg.max_batch,
                        on_progress=self.on_progress)
            elif self.cfg.executor == "processes":
                run_processes(todo, self.dataset, self._finished)
            else:
                run_sequential(todo, self.dataset, self._finished)
        return len(todo)

    def run(self, on_result: Callable[[RunResult], None] | None = None,
            on_progress: Callable[[Any], None] | None = None) -> list[dict[str, Any]]:
        """Every phase of the sweep (resuming what is stored); the summary records.
        `on_progress`: the Ray executor's `Progress` (shards and steps) as it goes."""
        self.on_result, self.on_progress = on_result, on_progress
        cfg, n = self.cfg, self.n_train
        grid = grid_configs(cfg, n)
        if not cfg.select:
            self.execute({"grid": grid})
            return self.write_outputs()
        seeds = range(cfg.seeds)
        self.execute({"grid": grid, "one-shot": [
            c for name in cfg.optimizers
            for c in make_configs(cfg, name, [one_shot(name)], seeds, n)]})
        keys = {config_key(c) for c in grid}
        chosen = best_per_optimizer([r for r in self.store.runs() if r["key"] in keys])
        self.execute({"tuned": [c for name, run in chosen.items() for c in make_configs(
            cfg, name, [run["config"]["hyperparameters"]], seeds, n)]})
        return self.write_outputs()

    def write_outputs(self) -> list[dict[str, Any]]:
        with self.guard():
            return write_outputs(self.store)


def tuned(cfg: CompareConfig, out: str | Path, lr_grid: str = DEFAULT_LR_GRID) -> CompareConfig:
    """`compare --tune`: `cfg` with η per optimizer chosen on validation by a vectorized
    sweep of `lr_grid` (seed 0, the comparison's steps and batch size) stored in `out`.
    η given explicitly in `cfg.lr` is kept."""
    if cfg.val_fraction == 0:
        raise ValueError(f"Invalid --tune with --val-fraction {cfg.val_fraction:g}: tuning "
                         "selects on the validation split; allowed: --val-fraction > 0")
    common = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Experiment)}
    sweep = Sweep(SweepConfig(**common | {"seeds": 1}, grid={"lr": parse_values("lr", lr_grid)}),
                  out, command=f"compare --tune (lr grid {lr_grid})")
    sweep.run()
    best = best_per_optimizer(sweep.store.runs())
    lr = {name: run["config"]["hyperparameters"]["lr"] for name, run in best.items()}
    return dataclasses.replace(cfg, lr={**lr, **cfg.lr})
