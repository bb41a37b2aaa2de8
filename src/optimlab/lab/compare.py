"""`compare`: every optimizer under every seed on one dataset; records written as they finish.

The output folder (what `optimlab.report` reads, never retraining):
- `config.json`: {"command", "settings" (CompareConfig), "dataset" (one line), "environment",
  and with `--tune` "tuning" (see `optimlab.lab.sweep.tune`: per optimizer the η used, its
  source "tuned" / "given" / "default" when every η diverged, the grid, its "edge")};
- `summary.json`: a list, one `optimlab.train.summary_record` per run plus its "run" name;
- `curves.csv`: run, step, train_seconds, split, metric, value (long format);
- `diagnostics.json`: only when callbacks return results: a list of {"run", "optimizer",
  "seed", "hyperparameters", "diagnostics": {callback name: callback.result()}};
- `comparisons.json`: once every run has ended, {"comparisons": [...]}: every pair of
  entries on its measures, paired by seed (see `optimlab.analysis.comparisons`).
- `checkpoints/`: the latest checkpoint of each run in flight (`optimlab.train.checkpoint`:
  every 30 s or a tenth of its steps; a vectorized group's members each in their run's
  file), one file per run, removed when the run ends.
Each run is written as soon as it ends (records and curves put back in seed-major order
at the end), so a crash, Ctrl-C or SIGTERM never loses finished runs, and the same command
into the same folder resumes: finished runs are kept and skipped, and the runs in flight go
on from their checkpoints (a run with callbacks that return results, such as
`--diagnostics`, starts over: their state is not in the checkpoint).
A folder holding a comparison with other settings is refused (see `lab.experiment`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimlab.analysis.comparisons import comparisons
from optimlab.analysis.records import CURVE_COLUMNS
from optimlab.analysis.stats import ALPHA, check_alpha
from optimlab.data.dataset import describe
from optimlab.lab.entries import Entry, learning_rate
from optimlab.lab.environment import environment
from optimlab.lab.executors import Checkpoints, Say, Steps, run_vectorized
from optimlab.lab.experiment import (
    Experiment,
    check_resume,
    guard_disk,
    load_dataset,
    output_folder,
    read_toml,
    write_json,
)
from optimlab.lab.policy import DEFAULT_LR
from optimlab.lab.store import Checkpoint, config_key
from optimlab.train import RunResult, TrainConfig, train_run, warm_up
from optimlab.train.checkpoint import Resume, from_bytes
from optimlab.train.config import check_targets


@dataclass(frozen=True)
class CompareConfig(Experiment):
    """Each optimizer under each seed, at one η per optimizer."""

    model: str = "cnn"  # the MNIST-1D reference CNN: the paper's strongest model
    seeds: int = 2  # two give a band on the curves and a std in the table
    lr: dict[str, float] = field(default_factory=dict)  # overrides of DEFAULT_LR, by label
    target_acc: float | None = 0.8  # reached by every default η within the default budget
    # val_fraction (Experiment): 0 trains on all of train, as the MNIST-1D paper does (4000
    # examples), and leaves time to target null

    def __post_init__(self) -> None:
        super().__post_init__()
        labels = [e.label for e in self.entries]
        unknown = [f"{n}={v}" for n, v in self.lr.items() if n not in labels]
        if unknown:
            raise ValueError(f"Invalid --lr {', '.join(unknown)}: no optimizer has that "
                             f"label; allowed: the labels {', '.join(labels)}")
        bad = {n: v for n, v in self.lr.items()
               if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < float("inf")}
        if bad:
            raise ValueError(f"Invalid lr: {bad}; allowed: numbers > 0")
        check_targets(self.target_acc, None)
        for e in self.entries:
            self.hyperparameters(e)  # every family has an η

    def hyperparameters(self, entry: Entry) -> dict[str, Any]:
        """A family's keyword arguments: η (`lab.entries.learning_rate`), then the entry's."""
        return {"lr": learning_rate(entry, self.lr, DEFAULT_LR),
                **{k: v for k, v in entry.hyperparameters.items() if k != "lr"}}


def settings(toml: dict[str, Any], flags: dict[str, Any]) -> CompareConfig:
    """A CompareConfig from a parsed TOML table (keys: CompareConfig's fields; `lr` a table
    by label; `target_acc = "none"` for no target) and flags (None: not given); flags win."""
    allowed = [f.name for f in dataclasses.fields(CompareConfig)]
    unknown = [k for k in toml if k not in allowed]
    if unknown:
        raise ValueError(f"Invalid key(s) in the config file: {', '.join(unknown)}; allowed: "
                         f"{', '.join(allowed)}")
    if not isinstance(toml.get("lr", {}), dict):
        raise ValueError(f"Invalid lr in the config file: {toml['lr']!r}; allowed: a table "
                         "of LABEL = VALUE")
    merged = {**toml, **{k: v for k, v in flags.items() if v is not None}}
    merged["lr"] = {**toml.get("lr", {}), **(flags.get("lr") or {})}
    if isinstance(merged.get("target_acc"), str) and merged["target_acc"].lower() == "none":
        merged["target_acc"] = None
    return CompareConfig(**merged)


def load_settings(path: str | Path | None, flags: dict[str, Any]) -> CompareConfig:
    """`settings` from the TOML file at `path` (None: flags only)."""
    return settings(read_toml(path) if path is not None else {}, flags)


def run_name(config: TrainConfig) -> str:
    return f"{config.label}-seed{config.seed}"


def train_configs(cfg: CompareConfig, n_train: int) -> list[TrainConfig]:
    """Seed-major order, so an interrupted comparison has every optimizer for the first seeds."""
    classify = cfg.task == "classification"
    return [TrainConfig(dataset=cfg.dataset, model=cfg.model, optimizer=e.name, label=e.label,
                        hyperparameters=cfg.hyperparameters(e), steps=cfg.steps_for(n_train),
                        batch_size=cfg.batch_size, seed=seed, eval_every=cfg.eval_every,
                        target_acc=cfg.target_acc if classify else None, device=cfg.device,
                        schedule=cfg.schedule, task=cfg.task, target_loss=cfg.target_loss)
            for seed in range(cfg.seeds) for e in cfg.entries]


def _append_curves(path: Path, run: str, result: RunResult) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(CURVE_COLUMNS)
        w.writerows((run, *p) for p in result.curves)


def _keep_curves(path: Path, runs: Sequence[str]) -> None:
    """Rewrite curves.csv (atomically) with only the rows of `runs`, in their order: drops
    what a run cut short by a crash or a full disk appended before its record was written."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f)]
    rank = {run: i for i, run in enumerate(runs)}
    kept = [r for r in rows[1:] if len(r) == len(CURVE_COLUMNS) and r[0] in rank]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows([CURVE_COLUMNS] + sorted(kept, key=lambda r: rank[r[0]]))
    os.replace(tmp, path)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text()) if path.exists() else default
    except json.JSONDecodeError as e:
        raise ValueError(f"Invalid --out: {path} is damaged ({e}); allowed: a folder written "
                         "by compare, or another --out") from None


class _Store:
    """The output folder, updated after every run; reopened to resume."""

    def __init__(self, out: Path, cfg: CompareConfig) -> None:
        self.out = output_folder(out, "compare")
        stored = _read_json(self.out / "config.json", None)
        if stored is None and (self.out / "summary.json").exists():
            raise ValueError(f"Invalid --out {str(out)!r}: its summary.json has no config.json "
                             "beside it, so it cannot be resumed; allowed: a folder compare "
                             "wrote, or a new or empty one")
        check_resume(self.out, stored and stored.get("settings"), cfg, "comparison")
        self.records: list[dict[str, Any]] = _read_json(self.out / "summary.json", [])
        self.diagnostics: list[dict[str, Any]] = _read_json(self.out / "diagnostics.json", [])
        self.finished = {r["run"] for r in self.records}
        _keep_curves(self.out / "curves.csv", [r["run"] for r in self.records])
        for run in self.finished:  # written before a crash removed it
            self._checkpoint(run).unlink(missing_ok=True)

    def _checkpoint(self, run: str) -> Path:
        """The file of `run`'s checkpoint (named by a hash: a label may be module:Class)."""
        return self.out / "checkpoints" / f"{hashlib.sha256(run.encode()).hexdigest()[:16]}.pt"

    def _keep(self, run: str, blob: bytes) -> None:
        """`run`'s new checkpoint, replacing its file atomically (written beside it, then
        renamed)."""
        path = self._checkpoint(run)
        with guard_disk(self.out, lambda: len(self.finished), "compare"):
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, path)

    def resume(self, run: str) -> Resume:
        """`train_run`'s checkpointing of `run`: from its file, if there is one."""
        path = self._checkpoint(run)
        return Resume(path.read_bytes() if path.exists() else None,
                      lambda step, blob: self._keep(run, blob))

    def checkpoints(self, configs: Sequence[TrainConfig]) -> Checkpoints:
        """The executors' checkpointing of `configs`, into the same files as `resume`'s: a
        group's members each into their run's file."""
        saved = {}
        for config in configs:
            path = self._checkpoint(run_name(config))
            if path.exists():
                blob = path.read_bytes()
                saved[config_key(config)] = (int(from_bytes(blob)["step"]), blob)

        def save(found: list[Checkpoint]) -> None:
            for config, _, blob in found:
                self._keep(run_name(config), blob)

        return Checkpoints(saved, save)

    def add(self, result: RunResult) -> dict[str, Any]:
        run = run_name(result.config)
        record = {"run": run, **result.record}
        with guard_disk(self.out, lambda: len(self.finished), "compare"):
            _append_curves(self.out / "curves.csv", run, result)
            if result.extras:
                self.diagnostics.append({k: record[k] for k in
                                         ("run", "optimizer", "seed", "hyperparameters")}
                                        | {"diagnostics": result.extras})
                write_json(self.out / "diagnostics.json", self.diagnostics)
            write_json(self.out / "summary.json", [*self.records, record])
        path = self._checkpoint(run)
        path.unlink(missing_ok=True)
        if path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()  # no run in flight: the folder holds what compare wrote only
        self.records.append(record)
        self.finished.add(run)
        return record

    def order(self, runs: Sequence[str]) -> None:
        """Records and curves in the order of `runs` (groups finish in their own)."""
        rank = {run: i for i, run in enumerate(runs)}
        self.records.sort(key=lambda r: rank.get(r["run"], len(rank)))
        with guard_disk(self.out, lambda: len(self.finished), "compare"):
            write_json(self.out / "summary.json", self.records)
            _keep_curves(self.out / "curves.csv", [r["run"] for r in self.records])


# How `Comparison.run` trains: see `lab.executors`.
EXECUTORS = ("vectorized", "sequential")

# (config, run name) -> callbacks for that run: progress bars, diagnostics recorders.
CallbackFactory = Callable[[TrainConfig, str], Sequence[Any]]


class Comparison:
    """A comparison set up and checked (data loaded, folder created, config.json written)."""

    def __init__(self, cfg: CompareConfig, out: str | Path, *, command: str = "",
                 dataset: Any = None, tuning: dict[str, Any] | None = None,
                 alpha: float = ALPHA) -> None:
        """`dataset`: an already loaded Dataset (tests pass tiny ones); default
        `data.load(cfg.dataset)`; `alpha`: the level of the comparisons. Bad settings raise
        ValueError/TypeError/OSError here, before any training; so does a folder holding a
        comparison with other settings."""
        self.alpha = check_alpha(alpha)
        self.comparisons: list[dict[str, Any]] = []  # filled when every run has ended
        ds = load_dataset(cfg, dataset)
        self.dataset, self.configs = ds, train_configs(cfg, len(ds.y_train))
        self.store = _Store(Path(out), cfg)
        with guard_disk(self.store.out, lambda: len(self.store.finished), "compare"):
            write_json(self.store.out / "config.json", {
                "command": command, "settings": dataclasses.asdict(cfg),
                **({"tuning": tuning} if tuning is not None else {}),
                "dataset": describe(ds),
                "environment": environment()})

    def run(self, callbacks: CallbackFactory | None = None,
            on_record: Callable[[dict[str, Any]], None] | None = None, *,
            executor: str = "vectorized", on_progress: Callable[[Any], None] | None = None,
            say: Say | None = None) -> list[dict[str, Any]]:
        """Train every (seed, optimizer) not finished yet, writing each run as it ends, then
        the comparisons; the summary records (those of an earlier, interrupted invocation
        first). `executor` "vectorized" trains the runs as members of one group
        (`lab.executors.run_vectorized`: what it cannot take it says through `say` and
        trains one by one; `on_progress` gets its steps); runs given `callbacks` need a
        training loop of their own and train one by one, as with "sequential"."""
        if executor not in EXECUTORS:
            raise ValueError(f"Invalid executor: {executor!r}; allowed: {', '.join(EXECUTORS)}")
        todo = [c for c in self.configs if run_name(c) not in self.store.finished]
        if executor == "vectorized" and callbacks is None:
            self._vectorized(todo, on_record, on_progress, say)
        else:
            self._one_by_one(todo, callbacks, on_record)
        self.store.order([run_name(c) for c in self.configs])
        self.comparisons = comparisons(self.store.records, self.alpha)
        with guard_disk(self.store.out, lambda: len(self.store.finished), "compare"):
            write_json(self.store.out / "comparisons.json", {"comparisons": self.comparisons})
        return self.store.records

    def _vectorized(self, todo: list[TrainConfig],
                    on_record: Callable[[dict[str, Any]], None] | None,
                    on_progress: Callable[[Any], None] | None, say: Say | None) -> None:
        def finished(result: RunResult) -> None:
            record = self.store.add(result)
            if on_record:
                on_record(record)

        extra = {"say": say} if say else {}
        run_vectorized(todo, self.dataset, finished, on_steps=Steps(todo, on_progress).add,
                       checkpoints=self.store.checkpoints(todo), **extra)

    def _one_by_one(self, todo: list[TrainConfig], callbacks: CallbackFactory | None,
                    on_record: Callable[[dict[str, Any]], None] | None) -> None:
        first: dict[str, TrainConfig] = {}
        for config in todo:
            first.setdefault(config.label, config)
        for config in first.values():
            warm_up(config, self.dataset)  # each optimizer once, before any timed run
        for config in todo:
            cbs = callbacks(config, run_name(config)) if callbacks else ()
            # a recorder's own state is not in a checkpoint: its run neither takes one nor
            # goes on from one
            resume = (None if any(hasattr(cb, "result") for cb in cbs)
                      else self.store.resume(run_name(config)))
            record = self.store.add(train_run(config, self.dataset, callbacks=cbs,
                                              resume=resume))
            if on_record:
                on_record(record)


def run_compare(cfg: CompareConfig, out: str | Path, *, command: str = "", dataset: Any = None,
                callbacks: CallbackFactory | None = None, alpha: float = ALPHA,
                executor: str = "vectorized") -> list[dict[str, Any]]:
    """Set up and run a comparison in one call (see `Comparison`)."""
    return Comparison(cfg, out, command=command, dataset=dataset, alpha=alpha).run(
        callbacks, executor=executor)
