"""`sweep`: hyperparameter grids per optimizer, many configurations as one job, resumable.

The output folder:
- `sweep.sqlite`: every run (see `optimlab.lab.store`): the source of truth, finished
  runs committed in batches (`BATCH_RUNS`, `BATCH_SECONDS`); re-running the identical
  sweep skips finished runs and re-runs unfinished ones. Other settings are refused,
  naming what differs; a grid that adds points to the stored one is accepted with
  `extend=True` (`--extend`);
- `summary.json`: as `compare` writes it, for all finished runs (rewritten from the
  store after each batch of runs); `curves.csv` (compare's format) on demand:
  `optimlab export csv DIR` writes it from the store.

Protocol with `select="val"` (DeepOBS): the grid runs under seed 0; per optimizer the
configuration with the best final validation accuracy (ties: lower validation loss;
diverged runs never win) is re-run under seeds 0..N-1 ("tuned"), and the class
defaults run under the same seeds ("one-shot"). Without it, every grid point runs
under seeds 0..N-1.

With `halving` (successive halving, see `optimlab.lab.halving`) the grid runs stop at the
rungs unless their configuration ranks in the best 1/η there: each rung's decision is
taken here, from the checkpoints of the runs at the rung, and stored in one transaction
with the stopped runs (finished as pruned: their records carry "pruned_at", the rung) and
the others' checkpoints, so a resume after a crash takes the same decisions. Every record
carries "steps_trained" and "pruned_at" (null: it reached its end or diverged), and
summary.json, beside its "runs", the sweep's "member_steps" and every decision ("rungs").
A pruned run never wins the selection. With TPE, each round of K trials is a bracket of its
own: its rungs are decided among its trials only, and its pruned trials are told as pruned.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from optimlab.analysis import budget
from optimlab.analysis.audit import audit
from optimlab.analysis.records import family, member_steps
from optimlab.analysis.selection import best_per_optimizer, edges, point_value
from optimlab.data.dataset import describe
from optimlab.lab import halving, tpe
from optimlab.lab.audit import decays, grid_runs, tuned_row
from optimlab.lab.entries import Entry
from optimlab.lab.environment import environment
from optimlab.lab.executors import Checkpoints, Job, Rungs, Steps, execute
from optimlab.lab.experiment import (
    check_resume,
    differences,
    guard_disk,
    load_dataset,
    write_json,
)
from optimlab.lab.grid import (
    DIGITS,
    SweepConfig,
    beyond,
    check_points,
    grown,
    hyperparameter_sets,
    one_shot,
    search_space,
    values_taken,
    with_values,
)
from optimlab.lab.search import Range
from optimlab.lab.store import Checkpoint, Store, config_key
from optimlab.train import CurvePoint, RunResult, Timings, TrainConfig, summary_record
from optimlab.train.checkpoint import curves_from_state, from_bytes

# Why a run exists: a grid point, the class defaults (select="val"), a re-run of the best.
ROLES = ("grid", "one-shot", "tuned")
# Finished runs committed together (see `optimlab.lab.store.Store`): one commit per run kept
# the driver near 450 runs/s, a batch of 256 reaches ~1,000 (docs/distributed.md); a
# `kill -9` loses at most one batch, none of whose runs was reported finished.
BATCH_RUNS = 256
BATCH_SECONDS = 1.0  # nor does a finished run wait longer than this for its commit


def make_configs(cfg: SweepConfig, optimizer: str | Entry, points: list[dict[str, Any]],
                 seeds: range, n_train: int) -> list[TrainConfig]:
    """The runs of one optimizer entry (or its label) at `points` under `seeds`."""
    entry = cfg.entry(optimizer)
    return [cfg.run_config(entry, hp, seed, n_train, dtype=cfg.dtype)
            for seed in seeds for hp in points]


def grid_seeds(cfg: SweepConfig) -> range:
    """The seeds of each grid point: seed 0 only with `select` (the re-runs come after)."""
    return range(1) if cfg.select else range(cfg.seeds)


def grid_configs(cfg: SweepConfig, n_train: int) -> list[TrainConfig]:
    """The grid runs of `cfg` (none for TPE: its trials are asked as the sweep runs)."""
    return [c for name in cfg.labels for c in make_configs(
        cfg, name, hyperparameter_sets(cfg, name), grid_seeds(cfg), n_train)]


def trial_configs(cfg: SweepConfig, points: tpe.Points, n_train: int) -> list[TrainConfig]:
    """The runs of TPE's trials `points` (label -> flat points), each under `grid_seeds`."""
    return [c for label, flat in points.items() for c in make_configs(
        cfg, label, [with_values(cfg.entry(label), p) for p in flat], grid_seeds(cfg), n_train)]


def select(cfg: SweepConfig, runs: list[dict[str, Any]],
           grids: dict[str, dict[str, tuple[float, ...]]]) -> dict[str, dict[str, Any]]:
    """Per optimizer of `cfg`, what selection on validation makes of `runs` (its grid
    points): {"hyperparameters": the best point, or None when every point diverged,
    "run": the best run's name, "all_diverged": bool, "edge": {key: "low" | "high"} for
    each swept key whose best value is the smallest or largest of `grids[optimizer]`, or,
    for a key sampled from a range (random search, TPE), lies within `EDGE_BAND` of an end
    of the range}."""
    best = best_per_optimizer(runs)
    out = {}
    for name in cfg.labels:
        run = best.get(name)
        hp = run["config"]["hyperparameters"] if run else None
        out[name] = {"hyperparameters": hp, "run": run["run"] if run else None,
                     "all_diverged": run is None and any(
                         family(r["summary"]) == name for r in runs),
                     "edge": _edges(cfg, name, grids[name], hp) if hp else {}}
    return out


def _edges(cfg: SweepConfig, name: str, grid: dict[str, tuple[float, ...]],
           hp: dict[str, Any]) -> dict[str, str]:
    """The edges of the point `hp` of entry `name` (see `select`)."""
    found = edges(grid, hp)
    if cfg.search == "grid":
        return found
    for key, values in search_space(cfg, cfg.entry(name)).items():
        if isinstance(values, Range):
            side = values.side(point_value(hp, key))
            found.pop(key, None)
            if side:
                found[key] = side
    return found


def write_outputs(store: Store, selection: dict[str, dict[str, Any]] | None = None,
                  runs: list[dict[str, Any]] | None = None,
                  audit: dict[str, Any] | None = None, halved: bool = False
                  ) -> list[dict[str, Any]]:
    """summary.json, replaced atomically: {"runs": every finished run's record (`runs`: the
    store's, when already read), and "expected_best" and "budget", its budget curves (see
    `optimlab.analysis.budget.summary_sections`), and with an `audit`, "audit"}. The curves
    stay in the store: `optimlab export csv` writes curves.csv on demand; one an older
    version wrote here is removed, since it would lag.
    With a `selection` (see `select`), each record has "edge": the selected point's edges
    ({key: "low" | "high"}, {} when inside its grid) for the runs of that point (the grid
    winner and its re-runs), None for every other run. `halved` (successive halving): each
    record has "steps_trained" and "pruned_at", and summary.json the sweep's
    "member_steps", its decisions ("rungs", see `optimlab.lab.halving.decide`) and the
    runs still training ("training": written at each rung, empty at the end)."""
    runs = store.runs() if runs is None else runs
    (store.out / "curves.csv").unlink(missing_ok=True)
    chosen = {(name, json.dumps(c["hyperparameters"], sort_keys=True)): c["edge"]
               for name, c in (selection or {}).items() if c["hyperparameters"] is not None}
    records = [run["summary"] | ({"edge": chosen.get((family(run["config"]), json.dumps(
        run["config"]["hyperparameters"], sort_keys=True)))} if selection is not None else {})
               for run in runs]
    sections = budget.summary_sections(budget.budget_curves(runs))
    if halved:
        records = [r | {"steps_trained": r["steps"], "pruned_at": r.get("pruned_at")}
                   for r in records]
        sections |= {"member_steps": member_steps(records), "rungs": store.rungs(),
                     "training": store.in_flight()}
    write_json(store.out / "summary.json",
               {"runs": records, **sections, **({"audit": audit} if audit else {})})
    (store.out / "expected_best.json").unlink(missing_ok=True)  # an earlier version's
    return records


class Sweep:
    """A sweep set up and checked: data loaded, store opened, settings recorded."""

    def __init__(self, cfg: SweepConfig, out: str | Path, *, command: str = "",
                 dataset: Any = None, extend: bool = False) -> None:
        """`dataset`: an already loaded Dataset (tests pass tiny ones); default
        `data.load(cfg.dataset)`. Bad settings raise ValueError/TypeError/OSError here,
        and so does a folder holding a sweep with other settings (`extend`: unless they
        differ only by a grid that holds every stored grid point)."""
        # optimizer -> {key: values added past an edge of the grid (`extend_edges`)}
        self.extra: dict[str, dict[str, tuple[float, ...]]] = {}
        # what the last `write_outputs` selected (and stored), so callers need not re-read
        # the store's curves to ask again
        self.selected: dict[str, dict[str, Any]] = {}
        # the store's finished runs as the last `write_outputs` read them (for the report)
        self.finished: list[dict[str, Any]] = []
        # with select="val": the fairness audit the last `write_outputs` stored
        self.audit: dict[str, Any] = {}
        ds = load_dataset(cfg, dataset)
        if (cfg.select == "val" or cfg.search == "tpe") and len(ds.y_val) == 0:
            what = "--select val" if cfg.select == "val" else "--search tpe"
            raise ValueError(f"Invalid {what}: {cfg.dataset} has no validation split; "
                             "allowed: --val-fraction > 0")
        self.cfg, self.dataset, self.n_train = cfg, ds, len(ds.y_train)
        self.store = Store(out, BATCH_RUNS, BATCH_SECONDS)
        stored = self.store.meta().get("settings")
        self._check_resume(stored and grown(stored, cfg), extend)
        with self.guard():
            self.store.set_meta("settings", dataclasses.asdict(cfg))
            self.store.set_meta("command", command)
            self.store.set_meta("dataset", describe(ds))
            self.store.set_meta("environment", environment())
        self.on_result: Callable[[RunResult], None] | None = None
        self.on_progress: Callable[[Any], None] | None = None  # the Ray executor's counts
        # TPE's trials so far, label -> points in the order asked (see optimlab.lab.tpe)
        self.points: tpe.Points = self.store.meta().get("tpe_trials", {})

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
        report = self.on_result
        with self.guard():
            self.store.finish(result.config, result.record, result.curves,
                              (lambda: report(result)) if report else None)

    def _commit_due(self) -> None:
        """Commit the finished runs that have waited their time (between steps, and
        between Ray's arrivals)."""
        if self.store.due():
            with self.guard():
                self.store.flush()

    def _steps(self, counter: Steps) -> Callable[[int], None]:
        """The executors' step count: the progress `counter`, then `_commit_due`."""
        def steps(n: int) -> None:
            counter.add(n)
            self._commit_due()
        return steps

    def _checkpointed(self, checkpoints: list[Checkpoint]) -> None:
        if checkpoints:
            with self.guard():
                self.store.save_checkpoints(checkpoints)

    def execute(self, planned: dict[str, list[TrainConfig]], halve: bool = False) -> int:
        """Plan configurations under their role ({role: configs}) and train those not
        finished, all in one executor call, each from its checkpoint if it has one (`halve`:
        through the rungs not yet decided); returns how many ran."""
        with self.guard():
            for role, configs in planned.items():
                self.store.plan(configs, role)
        todo = self.store.unfinished(list({config_key(c): c for configs in planned.values()
                                            for c in configs}.values()))
        if todo:
            with self.guard():
                self.store.mark_running(todo)
            kept = Checkpoints(self.store.checkpoints(todo), self._checkpointed)
            steps = self._steps(Steps(todo, self.on_progress))
            try:
                execute(self.cfg.executor, Job(
                    todo, self.dataset, self._finished, steps, self.on_progress, kept,
                    self.cfg.max_batch, on_wait=self._commit_due,
                    rungs=self._rungs(todo) if halve else None))
            finally:  # Ctrl-C or SIGTERM too: the runs that finished before it are kept
                with self.guard():
                    self.store.flush()
        return len(todo)

    def _rungs(self, configs: list[TrainConfig]) -> Rungs | None:
        """The rungs not yet decided for `configs` (None: none are left, the runs train to
        their end). A rung is decided per configuration: TPE's rounds each meet every rung."""
        cfg = self.cfg
        assert cfg.halving is not None
        points = {(c.label, _point(c.hyperparameters)) for c in configs}
        decided = {d["rung"] for d in self.store.rungs()
                   if (d["optimizer"], _point(d["hyperparameters"])) in points}
        steps = tuple(s for s in halving.rung_steps(cfg.first_rung, cfg.halving,
                                                    cfg.steps_for(self.n_train))
                      if s not in decided)
        return Rungs(steps, self._decide) if steps else None

    def _decide(self, step: int, checkpoints: list[Checkpoint]) -> set[str]:
        """Rank the runs at rung `step` (their checkpoints there), store the decision with
        the pruned runs and the kept checkpoints; the config keys that go on."""
        assert self.cfg.halving is not None
        states = [(c, from_bytes(blob)) for c, _, blob in checkpoints]
        # a point with a diverged seed ranks last; reading the summaries alone, since
        # decoding every stored run's curves at every rung grows with the sweep
        lost = {(family(c), _point(c["hyperparameters"])) for c in self.store.diverged()}
        scores = [halving.RungScore(c.label, c.hyperparameters,
                                    *_val_at(curves_from_state(st["curves"]), step),
                                    diverged=(c.label, _point(c.hyperparameters)) in lost)
                  for c, st in states]
        decisions = halving.decide(step, self.cfg.halving, scores)
        going = {(d["optimizer"], _point(d["hyperparameters"])) for d in decisions
                 if d["survives"]}
        kept = [cp for cp in checkpoints if (cp[0].label, _point(cp[0].hyperparameters)) in going]
        pruned = []
        for c, st in states:
            if (c.label, _point(c.hyperparameters)) not in going:
                curves = curves_from_state(st["curves"])
                record = summary_record(c, curves, Timings(st["train_s"], st["opt_s"]))
                pruned.append((c, record | {"pruned_at": step}, curves))
        with self.guard():
            self.store.record_rung(decisions, kept, pruned)
        self.write_outputs()  # valid at every rung: the best so far, and what still runs
        return {config_key(c) for c, _, _ in kept}

    def grids(self) -> dict[str, dict[str, tuple[float, ...]]]:
        """Per optimizer, its grid as swept: the settings' plus the edge extensions (TPE:
        the values its trials took)."""
        if self.cfg.search == "tpe":
            return {name: values_taken(self.points.get(name, [])) for name in self.cfg.labels}
        return {name: {k: tuple(dict.fromkeys((*v, *self.extra.get(name, {}).get(k, ()))))
                       for k, v in self.cfg.grid_for(name).items()}
                for name in self.cfg.labels}

    def grid(self) -> list[TrainConfig]:
        """The grid runs, edge extensions included (TPE: its trials so far)."""
        if self.cfg.search == "tpe":
            return trial_configs(self.cfg, self.points, self.n_train)
        # random search has no extensions, and its trials are drawn from the settings' lists
        cfg = dataclasses.replace(self.cfg, per_optimizer=self.grids()) if self.extra \
            else self.cfg
        return grid_configs(cfg, self.n_train)

    def selection(self, runs: list[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """`select` over the grid runs stored (`runs`: the store's, when already read) for
        this sweep's grid (extensions included)."""
        keys = {config_key(c) for c in self.grid()}
        runs = self.store.runs() if runs is None else runs
        return select(self.cfg, [r for r in runs if r["key"] in keys], self.grids())

    def _extend_edges(self, names: Collection[str] | None = None) -> None:
        """While a best point lies on an edge of its grid, add the next value past that
        edge and train it (at most MAX_EXTENSIONS times per optimizer and key); `names`:
        only these optimizers' grids (None: all)."""
        for _ in range(MAX_EXTENSIONS):
            added = False
            for name, chosen in self.selection().items():
                if names is not None and name not in names:
                    continue
                for key, side in chosen["edge"].items():
                    new = beyond(key, self.grids()[name][key], side)
                    if new is None or not _accepted(self.cfg.entry(name), key, new, chosen):
                        continue
                    self.extra.setdefault(name, {}).setdefault(key, ())
                    self.extra[name][key] += (new,)
                    added = True
            if not added:
                return
            self.execute({"grid": self.grid()})

    def run(self, on_result: Callable[[RunResult], None] | None = None,
            on_progress: Callable[[Any], None] | None = None) -> list[dict[str, Any]]:
        """Every phase of the sweep (resuming what is stored); the summary records.
        `on_progress`: the executor's `Progress` (shards and steps) as it goes."""
        self.on_result, self.on_progress = on_result, on_progress
        cfg, n = self.cfg, self.n_train
        if not cfg.select:
            self._search({})
            return self.write_outputs()
        seeds = range(cfg.seeds)
        shots = [c for e in cfg.entries for c in make_configs(cfg, e, [one_shot(e)], seeds, n)]
        if cfg.halving is not None:  # the defaults in full, and first: a grid point equal too
            self.execute({"one-shot": shots})
            self._search({})
        else:
            self._search({"one-shot": shots})
        if cfg.extend_edges:
            self._extend_edges()
        chosen = self.selection()
        self.execute({"tuned": [c for name, sel in chosen.items() if sel["hyperparameters"]
                                for c in make_configs(cfg, name, [sel["hyperparameters"]],
                                                      seeds, n)]})
        return self.write_outputs()

    def _search(self, also: dict[str, list[TrainConfig]]) -> None:
        """Train the grid (or the random trials) with the runs `also` ({role: configs}) in
        one executor call; TPE: see `_search_tpe`."""
        if self.cfg.search == "tpe":
            self._search_tpe(also)
        else:
            self.execute({"grid": self.grid(), **also}, self.cfg.halving is not None)

    def _search_tpe(self, also: dict[str, list[TrainConfig]]) -> None:
        """TPE's trials, K per executor call (`also` in the first), each round told its
        outcomes (see `optimlab.lab.tpe`); with halving, each round is a bracket of its own,
        its rungs decided among its trials."""
        cfg, user = self.cfg, self.on_result
        studies = tpe.Studies(list(cfg.entries),
                              {e.label: search_space(cfg, e) for e in cfg.entries},
                              cfg.search_seed, DIGITS)
        # finished runs' records by key: the store's once, then each as it finishes, so that
        # a round decodes no stored curves
        records = {r["key"]: r["summary"] for r in self.store.runs()}

        def finished(result: RunResult) -> None:
            records[config_key(result.config)] = result.record
            if user:
                user(result)

        def save(points: tpe.Points) -> None:
            self.points = points
            with self.guard():
                self.store.set_meta("tpe_trials", points)

        def train(asked: tpe.Points) -> dict[str, list[tpe.Outcome]]:
            configs = trial_configs(cfg, asked, self.n_train)
            self.execute({"grid": configs, **also}, cfg.halving is not None)
            also.clear()
            if any(config_key(c) not in records for c in configs):  # stopped at a rung
                records.update((r["key"], r["summary"]) for r in self.store.runs())
            return {label: [tpe.outcome([records[config_key(c)] for c in trial_configs(
                cfg, {label: [p]}, self.n_train)]) for p in points]
                for label, points in asked.items()}

        self.on_result = finished
        try:
            self.points = tpe.search(studies, cfg.trials or 0, cfg.batch, self.points, save,
                                     train)
        finally:
            self.on_result = user

    def write_outputs(self) -> list[dict[str, Any]]:
        """summary.json and curves.csv from the store, each record with its "edge"."""
        with self.guard():
            runs = self.finished = self.store.runs()  # read once: every run's curves
            selection = self.selected = self.selection(runs)
            self.store.set_meta("selection", selection)
            self.audit = self._audit(runs, selection) if self.cfg.select == "val" else {}
            return write_outputs(self.store, selection, runs, self.audit,
                                 self.cfg.halving is not None)

    def _audit(self, runs: list[dict[str, Any]], selection: dict[str, dict[str, Any]]
               ) -> dict[str, Any]:
        """The fairness audit of the selection (`optimlab.analysis.audit`): each entry's
        budget counted from its stored grid runs, judged on the re-runs of the best."""
        table = {e.label: tuned_row(e, grid_runs(runs, e.label), selection[e.label],
                                    "given" if "lr" in e.hyperparameters else "default")
                 for e in self.cfg.entries}
        return audit(table, [r["summary"] for r in runs if "tuned" in r["roles"]],
                     schedule=self.cfg.schedule, decays=decays(self.cfg.entries))


def _point(hyperparameters: dict[str, Any]) -> str:
    return json.dumps(hyperparameters, sort_keys=True)


def _val_at(curves: list[CurvePoint], step: int) -> tuple[float | None, float | None]:
    """The validation accuracy and loss evaluated at `step` (None: not there, or not finite)."""
    found = {p.metric: p.value for p in curves if p.split == "val" and p.step == step}
    return tuple(v if v is not None and math.isfinite(v) else None  # type: ignore[return-value]
                 for v in (found.get("acc"), found.get("loss")))


# Edge extensions per optimizer and key at most: three half-decade steps of the default η
# grid reach 30 (or 3e-6), past any η that trains these models.
MAX_EXTENSIONS = 3


def _accepted(entry: Entry, key: str, value: float, chosen: dict[str, Any]) -> bool:
    """Whether the optimizer's class accepts the best point with `key` set to `value`."""
    point = with_values(Entry(entry.name, chosen["hyperparameters"], entry.label),
                        {key: value})
    try:
        check_points(entry, [point])
    except ValueError:
        return False
    return True

