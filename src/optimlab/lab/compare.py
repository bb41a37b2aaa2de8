"""`compare`: every optimizer under every seed on one dataset; records written as they finish.

The output folder (what `optimlab.report` reads, never retraining):
- `config.json`: {"command", "settings" (CompareConfig), "dataset" (one line), "environment"};
- `summary.json`: a list, one `optimlab.train.summary_record` per run plus its "run" name;
- `curves.csv`: run, step, train_seconds, split, metric, value (long format);
- `diagnostics.json`: only when callbacks return results: a list of {"run", "optimizer",
  "seed", "hyperparameters", "diagnostics": {callback name: callback.result()}}.
Each run is written as soon as it ends, so a crash or Ctrl-C never loses finished runs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimlab import data
from optimlab.lab.environment import environment
from optimlab.train import RunResult, TrainConfig, schedules, train_run, warm_up

# Per-optimizer default η, the best of a measured grid (CNN on MNIST-1D, 2000 steps, batch
# 100, seeds 0-1; notes/readme-compare.md). Plain SGD needs a large η (0.5 oscillates, 0.1
# is slow). EMA Momentum takes steps of SGD's scale at the same η but averages the noise
# away, so it tolerates 0.5. RMSprop and Adam normalise the step to ≈ η per weight, so 1e-2
# (the MNIST-1D paper's Adam η) is best for both; 1e-3 is far too slow in this budget.
DEFAULT_LR = {"sgd": 0.2, "momentum": 0.5, "rmsprop": 1e-2, "adam": 1e-2, "adamw": 1e-2}
# 1500 steps: the ranking is settled (every optimizer is past the 80% target) and the default
# 4 optimizers x 2 seeds fit in 2 minutes on 2 busy cores; 2000 steps took 149 s there
# (measured, notes/readme-compare.md). The paper's 6000 steps: `--steps 6000`.
DEFAULT_STEPS = 1500

CURVE_COLUMNS = ("run", "step", "train_seconds", "split", "metric", "value")


@dataclass(frozen=True)
class CompareConfig:
    dataset: str = "mnist1d"  # offline, seconds to generate, and separates the optimizers
    model: str = "cnn"  # the MNIST-1D reference CNN: the paper's strongest model
    optimizers: tuple[str, ...] = ("sgd", "momentum", "rmsprop", "adam")  # the lecture's four
    steps: int | None = None  # None: `epochs` if given, else DEFAULT_STEPS
    epochs: int | None = None  # full passes over train (incomplete last batch dropped)
    batch_size: int = 100  # the MNIST-1D paper's batch size
    lr: dict[str, float] = field(default_factory=dict)  # overrides of DEFAULT_LR, by optimizer
    seeds: int = 2  # seeds 0..seeds-1; two give a band on the curves and a std in the table
    target_acc: float | None = 0.8  # reached by every default η within the default budget
    eval_every: int = 100  # 15 points on the default curve; evaluation is not timed
    device: str = "cpu"  # the models are tiny: a GPU mostly adds launch overhead
    data_dir: str | None = None  # where dataset files live (MNIST-1D needs none)
    download: bool = False  # fetch missing files (checksum-verified); never without asking
    # held out of train for "time to target" (data.load's default); 0 trains on all of train,
    # as the MNIST-1D paper does (4000 examples), and leaves time to target null
    val_fraction: float = 0.1
    schedule: str = "constant"  # η fixed, as the lecture's formulas (see train/schedules.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", schedules.canonical(self.schedule))
        unknown = [n for n in (*self.optimizers, *self.lr) if n not in DEFAULT_LR]
        if unknown or not self.optimizers:
            raise ValueError(f"Invalid optimizer name(s): {unknown or '(none)'}; allowed: "
                             f"{', '.join(DEFAULT_LR)}")
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ValueError(f"Invalid optimizers: {self.optimizers}; each name at most once")
        for name in ("seeds", "epochs"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"Invalid {name}: {v!r}; allowed: an integer >= 1")
        if self.steps is not None and self.epochs is not None:
            raise ValueError("Invalid steps and epochs together; allowed: at most one of them")

    def steps_for(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return self.epochs * (n_train // self.batch_size)
        return DEFAULT_STEPS


def run_name(config: TrainConfig) -> str:
    return f"{config.optimizer}-seed{config.seed}"


def train_configs(cfg: CompareConfig, n_train: int) -> list[TrainConfig]:
    """Seed-major order, so an interrupted comparison has every optimizer for the first seeds."""
    return [TrainConfig(dataset=cfg.dataset, model=cfg.model, optimizer=name,
                        hyperparameters={"lr": cfg.lr.get(name, DEFAULT_LR[name])},
                        steps=cfg.steps_for(n_train), batch_size=cfg.batch_size, seed=seed,
                        eval_every=cfg.eval_every, target_acc=cfg.target_acc, device=cfg.device,
                        schedule=cfg.schedule)
            for seed in range(cfg.seeds) for name in cfg.optimizers]


def write_json(path: Path, obj: Any) -> None:
    """Atomically (write, then rename): a crash leaves the old file or the new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _append_curves(path: Path, run: str, result: RunResult) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(CURVE_COLUMNS)
        w.writerows((run, *p) for p in result.curves)


class _Store:
    """The output folder, updated after every run."""

    def __init__(self, out: Path) -> None:
        if (out / "summary.json").exists():
            raise ValueError(f"Invalid --out {str(out)!r}: it already holds a comparison "
                             "(summary.json); allowed: a new or empty folder")
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.records: list[dict[str, Any]] = []
        self.diagnostics: list[dict[str, Any]] = []

    def add(self, result: RunResult) -> dict[str, Any]:
        run = run_name(result.config)
        record = {"run": run, **result.record}
        _append_curves(self.out / "curves.csv", run, result)
        self.records.append(record)
        write_json(self.out / "summary.json", self.records)
        if result.extras:
            self.diagnostics.append({k: record[k] for k in
                                     ("run", "optimizer", "seed", "hyperparameters")}
                                    | {"diagnostics": result.extras})
            write_json(self.out / "diagnostics.json", self.diagnostics)
        return record


# (config, run name) -> callbacks for that run: progress bars, diagnostics recorders.
CallbackFactory = Callable[[TrainConfig, str], Sequence[Any]]


class Comparison:
    """A comparison set up and checked (data loaded, folder created, config.json written)."""

    def __init__(self, cfg: CompareConfig, out: str | Path, *, command: str = "",
                 dataset: Any = None) -> None:
        """`dataset`: an already loaded Dataset (tests pass tiny ones); default
        `data.load(cfg.dataset)`. Bad settings raise ValueError/TypeError/OSError here,
        before any training."""
        ds = dataset if dataset is not None else data.load(
            cfg.dataset, data_dir=cfg.data_dir, download=cfg.download,
            val_fraction=cfg.val_fraction)
        n_train = len(ds.y_train)
        if cfg.batch_size > n_train:
            raise ValueError(f"Invalid batch_size: {cfg.batch_size}; allowed: <= {n_train}, "
                             f"the number of training examples of {cfg.dataset}")
        self.dataset, self.configs = ds, train_configs(cfg, n_train)
        self.store = _Store(Path(out))
        write_json(self.store.out / "config.json", {
            "command": command, "settings": dataclasses.asdict(cfg),
            "dataset": ds.summary() if hasattr(ds, "summary") else ds.name,
            "environment": environment()})

    def run(self, callbacks: CallbackFactory | None = None,
            on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Train every (seed, optimizer), writing each run as it ends; the summary records."""
        for config in self.configs[:len(set(c.optimizer for c in self.configs))]:
            warm_up(config, self.dataset)  # the first seed's runs hold every optimizer once
        for config in self.configs:
            cbs = callbacks(config, run_name(config)) if callbacks else ()
            record = self.store.add(train_run(config, self.dataset, callbacks=cbs))
            if on_record:
                on_record(record)
        return self.store.records


def run_compare(cfg: CompareConfig, out: str | Path, *, command: str = "", dataset: Any = None,
                callbacks: CallbackFactory | None = None) -> list[dict[str, Any]]:
    """Set up and run a comparison in one call (see `Comparison`)."""
    return Comparison(cfg, out, command=command, dataset=dataset).run(callbacks)
