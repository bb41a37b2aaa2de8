"""`compare`: every optimizer under every seed on one dataset, run as a sweep of one
configuration per entry times the seeds, on the same engine (`lab.executors`) and store.

The output folder (what `optimlab.report` reads, never retraining):
- `sweep.sqlite`: the run store (`optimlab.lab.store`), the source of truth: every run
  (its record and curves stored in one transaction as it ends), the checkpoints of the
  runs in flight (`optimlab.train.checkpoint`: every 30 s or a tenth of its steps; a
  vectorized group's members all in one transaction), the settings (for resuming) and
  the diagnostics;
- `config.json`: {"command", "settings" (CompareConfig), "dataset" (one line), "environment",
  and with `--tune` "tuning" (see `optimlab.lab.audit`: per optimizer what it tuned and held
  fixed, the budget in trials × steps counted from the stored trials, the edges)};
- written from the store for readers, as each run ends (then put in seed-major order):
  `summary.json`: {"runs": one `optimlab.train.summary_record` per run plus its "run"
  name, and once every run has ended "comparisons": every pair of entries on its
  measures, paired by seed (see `optimlab.analysis.comparisons`), and "audit": the
  fairness audit (`optimlab.analysis.audit`), whose unfair pairs' verdicts read
  "undecided"};
  `curves.csv`: run, step, train_seconds, split, metric, value (long format, as
  `optimlab export csv` writes a store's: clocks in float32);
  `diagnostics.json`: only when callbacks return results: a list of {"run", "optimizer",
  "seed", "hyperparameters", "diagnostics": {callback name: callback.result()}}.
A crash, Ctrl-C or SIGTERM never loses finished runs, and the same command into the same
folder resumes: finished runs are kept and skipped, and the runs in flight go on from
their checkpoints (a run with callbacks that return results, such as `--diagnostics`,
starts over: their state is not in the checkpoint). A folder holding a comparison with
other settings is refused (see `lab.experiment`), and so is one an earlier version wrote
(summary.json without a store).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from optimlab.analysis.audit import audit, undecide
from optimlab.analysis.comparisons import comparisons
from optimlab.analysis.records import write_curves_csv
from optimlab.analysis.stats import ALPHA, check_alpha
from optimlab.analysis.store import FILENAME
from optimlab.data.dataset import describe
from optimlab.lab.audit import decays, untuned
from optimlab.lab.entries import Entry, learning_rate
from optimlab.lab.environment import environment
from optimlab.lab.executors import Checkpoints, Job, Say, Steps, execute
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
from optimlab.lab.store import Checkpoint, Store
from optimlab.lab.store import run_name as run_name_of
from optimlab.train import RunResult, TrainConfig
from optimlab.train.config import check_targets


@dataclass(frozen=True)
class CompareConfig(Experiment):
    """Each optimizer under each seed, at one η per optimizer."""

    model: str = "cnn"  # the MNIST-1D reference CNN: the paper's strongest model
    # 7: the fewest at which the paired tests of three measures (Holm) can reach α = 0.05
    # (m · 2/2ⁿ ≤ α); as one vectorized job they take the time two seeds took one by one
    seeds: int = 7
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

    def lr_source(self, entry: Entry) -> str:
        """Where a family's η comes from: "given" (its own, or --lr), else "default"."""
        return "given" if entry.label in self.lr or "lr" in entry.hyperparameters \
            else "default"


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


# compare's run names: `adam-seed0` (an entry's label fixes its hyperparameters)
run_name = partial(run_name_of, point=False)


def train_configs(cfg: CompareConfig, n_train: int) -> list[TrainConfig]:
    """Seed-major order, so an interrupted comparison has every optimizer for the first seeds."""
    target = cfg.target_acc if cfg.task == "classification" else None
    return [cfg.run_config(e, cfg.hyperparameters(e), seed, n_train, target_acc=target)
            for seed in range(cfg.seeds) for e in cfg.entries]


# summary.json's sections beside "runs", from the records
Sections = Callable[[list[dict[str, Any]]], dict[str, Any]]


class _Store:
    """The comparison's runs in the run store (`optimlab.lab.store.Store`, DIR/sweep.sqlite,
    with the checkpoints of the runs in flight), and the files written from it for readers:
    summary.json, curves.csv and diagnostics.json. Reopened to resume."""

    def __init__(self, out: Path, cfg: CompareConfig) -> None:
        """Rewrites the files from the store (dropping what a run cut short by a crash
        appended before it was stored)."""
        self.out = output_folder(out, "compare")
        if (self.out / "summary.json").exists() and not (self.out / FILENAME).exists():
            raise ValueError(f"Invalid --out {str(out)!r}: its runs are in no run store "
                             f"({FILENAME}), so it cannot be resumed; allowed: a folder "
                             "compare wrote, or a new or empty one")
        self.db = Store(self.out)
        check_resume(self.out, self.db.meta().get("settings"), cfg, "comparison")
        self.finished: set[str] = set()
        with self.guard():
            self.db.set_meta("settings", dataclasses.asdict(cfg))
            self._rewrite()
        # a run's diagnostics are stored before the run: a crash between them reruns it
        self.diagnostics = [d for d in self.db.meta().get("diagnostics", [])
                            if d["run"] in self.finished]
        if self.diagnostics:
            with self.guard():
                write_json(self.out / "diagnostics.json", self.diagnostics)

    def guard(self) -> Any:
        """Writes to the store: a full disk becomes `DiskFull` (runs safe, how to resume)."""
        return guard_disk(self.out, self.db.finished_count, "compare")

    def _rewrite(self, sections: Sections | None = None) -> None:
        """summary.json and curves.csv of every finished run, in planning order (seed-major),
        summary.json with `sections(records)` beside the runs; a new comparison has none
        yet."""
        runs = self.db.runs()
        self.records = [r["summary"] for r in runs]
        self.finished = {r["run"] for r in runs}
        if not runs and sections is None and not (self.out / "summary.json").exists():
            return
        self.write_summary(**(sections(self.records) if sections else {}))
        write_curves_csv(self.out / "curves.csv", ((r["run"], r["curves"]) for r in runs))

    def write_summary(self, records: list[dict[str, Any]] | None = None, **sections: Any
                      ) -> None:
        """summary.json: {"runs": `records` (default: those stored), **sections}."""
        write_json(self.out / "summary.json",
                   {"runs": self.records if records is None else records, **sections})

    def _keep(self, found: list[Checkpoint]) -> None:
        with self.guard():
            self.db.save_checkpoints(found)

    def checkpoints(self, configs: Sequence[TrainConfig]) -> Checkpoints:
        """The executors' checkpointing of `configs`, into the store."""
        return Checkpoints(self.db.checkpoints(configs), self._keep)

    def add(self, result: RunResult) -> dict[str, Any]:
        """Store a finished run, then write it into the files."""
        run = run_name(result.config)
        record = {"run": run, **result.record}
        with self.guard():
            if result.extras:
                self.diagnostics.append({k: record[k] for k in
                                         ("run", "optimizer", "seed", "hyperparameters")}
                                        | {"diagnostics": result.extras})
                self.db.set_meta("diagnostics", self.diagnostics)
            self.db.finish(result.config, result.record, result.curves)
            if result.extras:
                write_json(self.out / "diagnostics.json", self.diagnostics)
            write_curves_csv(self.out / "curves.csv", [(run, result.curves)], append=True)
            self.write_summary([*self.records, record])
        self.records.append(record)
        self.finished.add(run)
        return record

    def order(self, sections: Sections) -> None:
        """Records and curves in planning order (groups finish in their own), summary.json
        with `sections(records)`: written once, the runs' summary until then."""
        with self.guard():
            self._rewrite(sections)


# The executors of `lab.executors.EXECUTORS` that compare offers (Ray needs a cluster's
# settings, which compare does not take).
EXECUTORS = ("vectorized", "sequential")

# (config, run name) -> callbacks for that run: progress bars, diagnostics recorders.
CallbackFactory = Callable[[TrainConfig, str], Sequence[Any]]


class Comparison:
    """A comparison set up and checked (data loaded, folder created, config.json written)."""

    def __init__(self, cfg: CompareConfig, out: str | Path, *, command: str = "",
                 dataset: Any = None, tuning: dict[str, Any] | None = None,
                 alpha: float = ALPHA) -> None:
        """`dataset`: an already loaded Dataset (tests pass tiny ones); default
        `data.load(cfg.dataset)`; `alpha`: the level of the comparisons; `tuning`: the
        tuning table of `optimlab.lab.tuning.tune` (None: nothing tuned), which the fairness
        audit judges. Bad settings raise ValueError/TypeError/OSError here, before any
        training; so does a folder holding a comparison with other settings."""
        self.alpha = check_alpha(alpha)
        self.comparisons: list[dict[str, Any]] = []  # filled when every run has ended
        self.audit: dict[str, Any] = {}  # likewise (see `optimlab.analysis.audit`)
        # untuned: every family at its η, a budget of 0 (what the audit says of the demo)
        self.tuning = tuning if tuning is not None else {
            e.label: untuned(e, cfg.hyperparameters(e)["lr"], cfg.lr_source(e))
            for e in cfg.entries}
        self.cfg = cfg
        ds = load_dataset(cfg, dataset)
        self.dataset, self.configs = ds, train_configs(cfg, len(ds.y_train))
        self.store = _Store(Path(out), cfg)
        with self.store.guard():
            write_json(self.store.out / "config.json", {
                "command": command, "settings": dataclasses.asdict(cfg),
                **({"tuning": tuning} if tuning is not None else {}),
                "dataset": describe(ds),
                "environment": environment()})

    def run(self, callbacks: CallbackFactory | None = None,
            on_record: Callable[[dict[str, Any]], None] | None = None, *,
            executor: str = "vectorized", on_progress: Callable[[Any], None] | None = None,
            say: Say | None = None) -> list[dict[str, Any]]:
        """Train every (seed, optimizer) not finished yet, each from its checkpoint if it
        has one, storing each run as it ends, then the comparisons; the summary records in
        seed-major order. `executor`: a name in `EXECUTORS` (`lab.executors.execute`);
        "vectorized" trains the runs as members of one group (what it cannot take it says
        through `say` and trains one by one); `on_progress` gets the steps; runs given
        `callbacks` need a training loop of their own and train one by one."""
        if executor not in EXECUTORS:
            raise ValueError(f"Invalid executor: {executor!r}; allowed: {', '.join(EXECUTORS)}")
        todo = self.store.db.unfinished(self.configs)
        with self.store.guard():
            self.store.db.plan(self.configs, "compare", point=False)
            self.store.db.mark_running(todo)

        def finished(result: RunResult) -> None:
            record = self.store.add(result)
            if on_record:
                on_record(record)

        if todo:
            execute(executor, Job(
                todo, self.dataset, finished, Steps(todo, on_progress).add, on_progress,
                self.store.checkpoints(todo), say=say,
                callbacks=(lambda c: callbacks(c, run_name(c))) if callbacks else None))
        self.store.order(self._sections)
        return self.store.records

    def _sections(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The comparisons and the audit of `records` (every run ended), for summary.json."""
        self.audit = audit(self.tuning, records, schedule=self.cfg.schedule,
                           decays=decays(self.cfg.entries))
        self.comparisons = undecide(comparisons(records, self.alpha), self.audit)
        return {"comparisons": self.comparisons, "audit": self.audit}


def run_compare(cfg: CompareConfig, out: str | Path, *, command: str = "", dataset: Any = None,
                callbacks: CallbackFactory | None = None, alpha: float = ALPHA,
                executor: str = "vectorized") -> list[dict[str, Any]]:
    """Set up and run a comparison in one call (see `Comparison`)."""
    return Comparison(cfg, out, command=command, dataset=dataset, alpha=alpha).run(
        callbacks, executor=executor)
