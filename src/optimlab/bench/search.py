"""The search race: how soon each search reaches the best validation score of the full sweep.

Rows, on the same data, model, steps and torch threads, one optimizer entry, N trials each:

- `full`: `--search random`, every trial trained to the last step: the sweep whose best
  validation score is the target (its `search_seed`'s N configurations);
- `random`: the same random search with the extra sweep settings (`extra`, e.g. successive
  halving); left out when there are none, since it would be `full` again;
- `tpe-kK`: `--search tpe --batch K` with the extra settings, for each K of `batches` (with
  successive halving, each round of K trials a bracket of its own);
- `optuna`: the peer, as its users run it: Optuna's TPE with its `SuccessiveHalvingPruner`,
  trial by trial, each trial a plain torch loop (a `DataLoader`, the `torch.optim` class
  that computes our update, `zero_grad`, forward, loss, `backward`, `step`) that reports
  the validation accuracy at every evaluation step and stops when `trial.should_prune()`.

Each row's clock starts after the data is loaded and an untimed warm-up trial. A trial
counts when it has trained to the last step (a pruned one never reaches the target), at
the moment its result is known (the vectorized executor's: when its job ends). Per row:
the wall time, the best score by trial, and the time and trials to reach the target.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from optimlab.bench.sweep import loop_step, timed_sweep, torch_peer
from optimlab.lab import tpe
from optimlab.lab.environment import environment
from optimlab.lab.grid import TPE_BATCH, SweepConfig, search_space, with_values
from optimlab.lab.search import Range
from optimlab.train import RunResult, init_model, on_device

ROWS = ("full", "random", "tpe", "optuna")


@dataclass
class RaceConfig:
    sweep: SweepConfig  # the case: one entry, `trials`, ranges, steps (search: random)
    rows: tuple[str, ...] = ROWS  # "full" always runs: it sets the target
    batches: tuple[int, ...] = (TPE_BATCH,)  # K of the tpe rows
    extra: dict[str, Any] = field(default_factory=dict)  # SweepConfig fields of our rows

    def validate(self) -> None:
        bad = [r for r in self.rows if r not in ROWS]
        if bad or "full" not in self.rows:
            raise ValueError(f"Invalid race rows: {', '.join(self.rows)}; allowed: full and "
                             f"any of {', '.join(ROWS[1:])}")
        if len(self.sweep.entries) != 1:
            raise ValueError(f"Invalid --optimizers {','.join(self.sweep.optimizers)} for the "
                             "search race; allowed: one optimizer entry")
        if any(k < 1 for k in self.batches):
            raise ValueError(f"Invalid --batches {self.batches}; allowed: integers >= 1")
        self.configs()  # every row's settings checked (SweepConfig's), before any trains

    def configs(self) -> dict[str, SweepConfig]:
        """Our rows' sweeps, by row name."""
        full = dataclasses.replace(self.sweep, search="random")
        out = {"full": full}
        if "random" in self.rows and self.extra:
            out["random"] = dataclasses.replace(full, **self.extra)
        for k in self.batches if "tpe" in self.rows else ():
            out[f"tpe-k{k}"] = dataclasses.replace(full, search="tpe", batch=k, **self.extra)
        return out


Trace = list[dict[str, Any]]  # per finished trial: {"t", "score", "hyperparameters"}


def race_ours(cfg: SweepConfig, dataset: Any, out: Path) -> tuple[float, Trace]:
    """One of our sweeps into the empty folder `out`: its wall time and trace."""
    trace: Trace = []

    def on_result(result: RunResult, seconds: float) -> None:
        if result.record.get("pruned_at") is None:  # trained to the last step
            trace.append({"t": seconds, "score": tpe.score([result.record]),
                          "hyperparameters": result.config.hyperparameters})

    wall, _, _ = timed_sweep(cfg, out, dataset, on_result)
    return wall, trace


def suggest(trial: Any, space: dict[str, Range | tuple[float, ...]]) -> dict[str, float]:
    """The peer's point: each range on its declared scale as an Optuna user writes it (1 - β
    log-uniform as `1-beta1`), a list as a categorical."""
    flat = {}
    for key, values in space.items():
        if not isinstance(values, Range):
            flat[key] = trial.suggest_categorical(key, values)
        elif values.scale == "log1m":
            flat[key] = 1 - trial.suggest_float(f"1-{key}", 1 - values.hi, 1 - values.lo,
                                                log=True)
        else:
            flat[key] = trial.suggest_float(key, values.lo, values.hi,
                                            log=values.scale == "log")
    return flat


@torch.no_grad()
def val_accuracy(model: torch.nn.Module, data: Any) -> float:
    model.eval()
    acc = (model(data.x_val).argmax(1) == data.y_val).float().mean().item()
    model.train()
    return acc


def peer_objective(cfg: SweepConfig, data: Any, t0: float, trace: Trace, optuna: Any
                   ) -> Callable[[Any], float]:
    """The peer's objective: one trial trained in a plain torch loop, reported and pruned at
    every evaluation step; its validation accuracy (0 when it diverged). `optuna`: the
    module (`tpe.require`)."""
    entry, steps = cfg.entries[0], cfg.steps_for(len(data.y_train))
    space = search_space(cfg, entry)

    def objective(trial: Any) -> float:
        hp = with_values(entry, suggest(trial, space))
        model = init_model(cfg.model, data, 0)
        cls, kw = torch_peer(entry.name, hp)
        optimizer = cls(model.parameters(), **kw)
        loader = DataLoader(TensorDataset(data.x_train, data.y_train),
                            batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(0))
        batches = itertools.chain.from_iterable(itertools.repeat(loader))
        acc = 0.0
        for step, (x, y) in zip(range(1, steps + 1), batches, strict=False):
            if not math.isfinite(loop_step(model, optimizer, x, y)):
                acc = 0.0
                break
            if step % cfg.eval_every == 0 or step == steps:
                acc = val_accuracy(model, data)
                trial.report(acc, step)
                if step < steps and trial.should_prune():
                    raise optuna.TrialPruned()
        trace.append({"t": time.perf_counter() - t0, "score": acc, "hyperparameters": hp})
        return acc

    return objective


def race_peer(cfg: SweepConfig, dataset: Any) -> tuple[float, Trace]:
    """The peer's N trials: its wall time and trace."""
    with tpe.quiet() as optuna:  # no line per trial
        data = on_device(dataset, "cpu", torch.float32)
        trace: Trace = []
        t0 = time.perf_counter()
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=cfg.search_seed),
                                    pruner=optuna.pruners.SuccessiveHalvingPruner())
        study.optimize(peer_objective(cfg, data, t0, trace, optuna), n_trials=cfg.trials)
        return time.perf_counter() - t0, trace


def summarize(wall: float, trace: Trace, target: float) -> dict[str, Any]:
    """A row: wall time, trials trained to the end, the best score after each of them,
    and the time and trials to reach `target` (None: never reached)."""
    best = list(itertools.accumulate((t["score"] for t in trace), max))
    hit = next((i for i, b in enumerate(best) if b >= target), None)
    return {"wall_s": wall, "finished_trials": len(trace), "best": best[-1] if best else None,
            "best_by_trial": best,
            "time_to_target_s": trace[hit]["t"] if hit is not None else None,
            "trials_to_target": hit + 1 if hit is not None else None, "trace": trace}


def run_race(cfg: RaceConfig, dataset: Any, progress: Callable[[str], None] | None = None
             ) -> dict[str, Any]:
    """Every row once, `full` first, as one JSON-ready record."""
    cfg.validate()
    configs = cfg.configs()
    full = configs["full"]
    runs: dict[str, tuple[float, Trace]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # untimed: one short trial, so that the first row pays no one-time costs (imports,
        # the kernels' cache) that the rows after it would not
        steps = min(full.steps_for(len(dataset.y_train)), 10)
        race_ours(dataclasses.replace(full, trials=1, steps=steps, epochs=None), dataset,
                  Path(tmp) / "warm-up")
        for name, sweep in configs.items():
            if progress:
                progress(name)
            runs[name] = race_ours(sweep, dataset, Path(tmp) / name)
    if "optuna" in cfg.rows:
        if progress:
            progress("optuna")
        runs["optuna"] = race_peer(full, dataset)
    target = summarize(*runs["full"], math.inf)["best"]  # the full sweep's best score
    return {"settings": {"sweep": dataclasses.asdict(cfg.sweep), "rows": list(cfg.rows),
                         "batches": list(cfg.batches), "extra": cfg.extra,
                         "threads": torch.get_num_threads()},
            "environment": environment(), "target": target,
            "rows": {name: summarize(wall, trace, target) for name, (wall, trace) in runs.items()}}


def format_race(result: dict[str, Any]) -> str:
    """One line per row: wall time, best score, time and trials to the target."""
    s = result["settings"]["sweep"]
    lines = [f"{s['trials']} trials of {','.join(s['optimizers'])}, {s['steps']} steps, "
             f"{result['settings']['threads']} threads; target: the full sweep's best "
             f"validation score {result['target']:.4f}",
             f"  {'row':<10}{'wall s':>9}{'best':>9}{'to target s':>13}{'trials':>8}"]
    for name, r in result["rows"].items():
        to = r["time_to_target_s"]
        lines.append(f"  {name:<10}{r['wall_s']:>9.1f}{r['best'] or 0:>9.4f}"
                     f"{'never' if to is None else f'{to:.1f}':>13}"
                     f"{r['trials_to_target'] or '-':>8}")
    return "\n".join(lines)


__all__ = ["ROWS", "RaceConfig", "format_race", "race_ours", "race_peer", "run_race", "suggest",
           "summarize"]
