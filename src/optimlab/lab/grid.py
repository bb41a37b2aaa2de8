"""Sweep grids: parsing `LO:HI:N` and value lists, the TOML file, and the configurations.

A grid key applies to the optimizers that have that hyperparameter (`APPLIES`, derived
from the specifications by `optimlab.lab.policy`); per optimizer, the grid is the product
of its keys' values. Keys left out keep the class default. `beta1`/`beta2` become Adam's
`betas` pair.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

# defined torch-free, where the sweep report judges edges too; the lab's names for them
from optimlab.analysis.selection import edges as edges
from optimlab.analysis.selection import point_value as point_value
from optimlab.lab.entries import (
    Entry,
    allowed_hyperparameters,
    check_hyperparameters,
    class_defaults,
    learning_rate,
)
from optimlab.lab.executors import EXECUTORS
from optimlab.lab.experiment import Experiment, read_toml
from optimlab.lab.policy import APPLIES, DEFAULT_LR_GRID
from optimlab.lab.search import SEARCHES, Range, parse_range, search_range, trial
from optimlab.lab.tpe import require as require_optuna
from optimlab.optim import SPECS
from optimlab.train.config import check_positive_int

OPTIMIZER_NAMES = tuple(SPECS)
# Values rounded to 3 significant digits: readable names, stable keys in the store.
DIGITS = 3
# TPE's trials per job by default: see docs/lab.md, "Model-based search"
TPE_BATCH = 4


def parse_values(key: str, spec: Any) -> tuple[float, ...]:
    """`"LO:HI:N"` (N log-spaced values), `"a,b,c"`, a number or a list of numbers."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        values: list[float] = [float(spec)]
    elif isinstance(spec, (list, tuple)) and spec:
        values = [_number(key, v) for v in spec]
    elif isinstance(spec, str) and spec.count(":") == 2:
        values = _log_range(key, spec)
    elif isinstance(spec, str) and spec.count(":") == 1:
        raise ValueError(f"Invalid {key}: {spec!r}: a grid range needs a count; allowed: "
                         "LO:HI:N (N log-spaced values), or LO:HI with --search random")
    elif isinstance(spec, str) and spec.strip():
        values = [_number(key, v) for v in spec.split(",")]
    else:
        raise ValueError(f"Invalid {key}: {spec!r}; allowed: LO:HI:N, a comma-separated "
                         "list of numbers, or a TOML list")
    rounded = tuple(dict.fromkeys(rounded_value(key, v) for v in values))
    if any(not math.isfinite(v) or v < 0 for v in rounded):
        raise ValueError(f"Invalid {key}: {spec!r}; allowed: finite values >= 0")
    return rounded


def rounded_value(key: str, v: float) -> float:
    """`v` to `DIGITS` significant digits; a decay rate (UNIT_KEYS) in 1 − v, so that 0.9999
    stays 0.9999 and never becomes the excluded 1."""
    if key in UNIT_KEYS and 0 < v < 1:
        return float(f"{1 - float(f'{1 - v:.{DIGITS}g}'):.15g}")
    return float(f"{v:.{DIGITS}g}")


def _number(key: str, v: Any) -> float:
    try:
        if isinstance(v, bool):
            raise ValueError
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {key}: {v!r} is not a number; allowed: numbers, as "
                         "LO:HI:N or V,V,...") from None


def _log_range(key: str, spec: str) -> list[float]:
    lo_s, hi_s, n_s = spec.split(":")
    lo, hi = _number(key, lo_s), _number(key, hi_s)
    if not n_s.strip().isdigit() or int(n_s) < 1 or not 0 < lo <= hi:
        raise ValueError(f"Invalid {key}: {spec!r}; allowed: LO:HI:N with 0 < LO <= HI "
                         "and an integer N >= 1 (N log-spaced values)")
    n = int(n_s)
    if n == 1:
        return [lo]
    step = (math.log10(hi) - math.log10(lo)) / (n - 1)
    return [10 ** (math.log10(lo) + i * step) for i in range(n)]


SELECT = (None, "val")


@dataclass(frozen=True)
class SweepConfig(Experiment):
    """A sweep: per optimizer a hyperparameter grid, each point trained under some seeds."""

    # dataset mnist1d (Experiment): offline and fast, the lecture's sweep fits in minutes
    model: str = "mlp"  # the MNIST-1D reference MLP: all dense layers, ideal for batching
    seeds: int = 1  # seeds 0..N-1 per grid point; with select="val", for the re-runs only
    steps: int | None = 2000  # every optimizer's best η is past 85% val accuracy on MNIST-1D
    eval_every: int = 250  # 9 points on a 2000-step curve; evaluation is not timed
    # grid key -> values, for every optimizer the key applies to (see APPLIES)
    grid: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {"lr": parse_values("lr", DEFAULT_LR_GRID)})
    # label -> {key: values}: overrides `grid` for that optimizer entry (TOML [grid.LABEL])
    per_optimizer: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=dict)
    dtype: str = "float32"  # float64 makes batched and single runs agree to 1e-9
    executor: str = "vectorized"  # K configurations per forward/backward (see executors.py)
    max_batch: int = 64  # members trained together at most: bounds memory
    select: str | None = None  # "val": DeepOBS protocol, tune on val then re-run with seeds
    # with select="val": while a best value lies on an edge of its grid, extend the grid
    # past that edge and select again (DeepOBS; Wilson et al. 2017); off: the grid is as given
    extend_edges: bool = False
    # "random": `trials` configurations per optimizer entry, sampled from `ranges` (key ->
    # (LO, HI)) and drawn from the lists in `grid` (see optimlab.lab.search); with neither,
    # from each optimizer's declared search space (its specification's `search`); `settings`
    # leaves the default η grid out of `grid` then, where a list would fix η's values;
    # "tpe": the same space, its trials asked of Optuna's TPE (see optimlab.lab.tpe)
    search: str = "grid"
    trials: int | None = None  # random or TPE search's configurations per optimizer entry
    search_seed: int = 0  # the same seed samples the same trials
    # with search="tpe": trials asked per entry before any is told, trained as one job;
    # 1 is TPE as Optuna runs it, trial by trial (see docs/lab.md, "Model-based search")
    batch: int = TPE_BATCH
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    # successive halving (optimlab.lab.halving): η, the rungs' ratio (None: every grid run
    # trains to the end); 3, the default of `--halving` alone, keeps a third at each rung
    halving: int | None = None
    # the first rung (None: `eval_every`, the first step with a validation score)
    min_steps: int | None = None

    # How the runs are computed, not which: a resume may change them.
    HOW: ClassVar[tuple[str, ...]] = (*Experiment.HOW, "executor", "max_batch")

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [n for n in self.per_optimizer if n not in self.labels]
        if bad:
            raise ValueError(f"Invalid [grid.{bad[0]}]: no optimizer has that label; allowed: "
                             f"{', '.join(self.labels)}")
        check_positive_int("max_batch", self.max_batch)
        for key, allowed in (("executor", EXECUTORS), ("select", SELECT),
                             ("dtype", ("float32", "float64"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"Invalid {key}: {getattr(self, key)!r}; allowed: "
                                 f"{', '.join(map(str, allowed))}")
        for key in (*self.grid, *self.ranges,
                    *(k for g in self.per_optimizer.values() for k in g)):
            if key not in APPLIES:
                raise ValueError(f"Invalid grid key: {key!r}; allowed: {', '.join(APPLIES)}")
        if self.extend_edges and self.select != "val":
            raise ValueError("Invalid extend_edges without select 'val': the edges are those "
                             "of the selected point; allowed: --extend-edges with --select val")
        self._check_search()
        self._check_halving()
        for e in self.entries:  # every value, before anything trains (TPE: each list's)
            check_points(e, hyperparameter_sets(self, e) if self.search != "tpe" else [
                with_values(e, {k: v}) for k, vs in search_space(self, e).items()
                if isinstance(vs, tuple) for v in vs])

    def _check_search(self) -> None:
        """A ValueError for random-search settings that do not fit together."""
        check_positive_int("trials", self.trials, optional=True)
        check_positive_int("batch", self.batch)
        if self.search not in SEARCHES:
            raise ValueError(f"Invalid search: {self.search!r}; allowed: {', '.join(SEARCHES)}")
        if self.batch != TPE_BATCH:
            check_batch(self.search, self.batch)
        if isinstance(self.search_seed, bool) or not isinstance(self.search_seed, int) \
                or self.search_seed < 0:
            raise ValueError(f"Invalid search_seed: {self.search_seed!r}; allowed: an integer "
                             ">= 0")
        if self.search == "grid" and (self.trials is not None or self.ranges):
            what = (f"--trials {self.trials}" if self.trials is not None
                    else f"the range {next(iter(self.ranges))} LO:HI")
            raise ValueError(f"Invalid {what} with --search grid: a grid runs each of its "
                             "points once; allowed: with --search random or tpe")
        if self.search == "grid":
            return
        if self.search == "tpe":
            require_optuna()
        if self.trials is None:
            raise ValueError(f"Invalid --search {self.search} without --trials; allowed: "
                             "--trials N, the configurations to sample per optimizer")
        if self.extend_edges:
            raise ValueError(f"Invalid extend_edges with --search {self.search}: sampled "
                             "trials have no grid to extend; allowed: a wider LO:HI range")
        for e in self.entries:
            if not any(isinstance(v, Range) for v in search_space(self, e).values()):
                raise ValueError(
                    f"Invalid --trials {self.trials} for {e.label}: every key it searches is "
                    f"a list ({', '.join(search_space(self, e))}), which {self.search} search "
                    "would only draw from with repeats; allowed: a range LO:HI for one key at "
                    "least, or --search grid to run every point of the lists once")

    def _check_halving(self) -> None:
        """A ValueError for successive-halving settings that do not fit together."""
        if self.halving is None:
            if self.min_steps is not None:
                raise ValueError(f"Invalid --min-steps {self.min_steps} without --halving: it "
                                 "is the first rung; allowed: with --halving [ETA]")
            return
        if isinstance(self.halving, bool) or not isinstance(self.halving, int) \
                or self.halving < 2:
            raise ValueError(f"Invalid --halving {self.halving!r}; allowed: an integer >= 2 "
                             "(the rungs' ratio η: 1/η of the configurations go on)")
        check_positive_int("min_steps", self.min_steps, optional=True)
        first = self.first_rung
        if first % self.eval_every:
            raise ValueError(f"Invalid --min-steps {first}: the rungs rank on the validation "
                             f"score, measured every --eval-every {self.eval_every} steps; "
                             "allowed: a multiple of it")
        if self.steps is not None and first >= self.steps:
            raise ValueError(f"Invalid --min-steps {first}; allowed: below --steps "
                             f"{self.steps} (a rung at the last step stops nothing)")
        if self.extend_edges:
            raise ValueError("Invalid extend_edges with --halving: points added after the "
                             "rungs were decided would skip them; allowed: one of the two")

    @property
    def first_rung(self) -> int:
        """Successive halving's first rung: `min_steps`, or `eval_every`."""
        return self.min_steps if self.min_steps is not None else self.eval_every

    def grid_for(self, entry: Entry | str) -> dict[str, tuple[float, ...]]:
        """The keys and values swept for an optimizer entry (or its label)."""
        entry = self.entry(entry)
        if self.search == "random":  # the values its trials took
            return values_taken([trial(self.search_seed, entry.label, i,
                                       search_space(self, entry), DIGITS)
                                 for i in range(self.trials or 0)])
        if self.search == "tpe":  # known as its trials are asked: `Sweep.grids`
            return {}
        own = {k: v for k, v in self.grid.items() if applies(k, entry)}
        return {**own, **self.per_optimizer.get(entry.label, {})}


def check_batch(search: str, batch: int) -> None:
    """A ValueError for a TPE batch size given to another search."""
    if search != "tpe":
        raise ValueError(f"Invalid --batch {batch} with --search {search}: only TPE asks for "
                         "trials in batches; allowed: with --search tpe")


def values_taken(points: list[dict[str, float]]) -> dict[str, tuple[float, ...]]:
    """{key: the values sampled trials (flat points) took, sorted}."""
    return {k: tuple(sorted({p[k] for p in points})) for k in points[0]} if points else {}


def _keyword(key: str) -> str:
    """The class keyword a grid key sets (beta1 and beta2 are the two halves of betas)."""
    return "betas" if key in ("beta1", "beta2") else key


def applies(key: str, entry: Entry) -> bool:
    """Whether grid key `key` is swept for `entry`: the optimizer has it (built-ins: see
    APPLIES; others: their class takes the keyword) and the entry does not pin it."""
    if _keyword(key) in entry.hyperparameters:
        return False
    if entry.name in OPTIMIZER_NAMES:
        return entry.name in APPLIES[key]
    allowed = allowed_hyperparameters(entry.optimizer_class())
    return (key == "lr") if allowed is None else _keyword(key) in allowed


# A module:Class entry declares no search space: η over the default η grid's span.
FALLBACK_SPACE = {"lr": (1e-4, 1.0)}


def search_space(cfg: SweepConfig, entry: Entry) -> dict[str, Range | tuple[float, ...]]:
    """Random search's space for `entry`: the keys given (ranges, lists; an entry's own
    table wins) that it sweeps, and η's declared range when η is not given; with no key
    given at all, the optimizer's whole declared space (its specification's `search`)."""
    spec = SPECS.get(entry.name)
    declared = dict(spec.search) if spec is not None else FALLBACK_SPACE
    lists = {**cfg.grid, **cfg.per_optimizer.get(entry.label, {})}
    ranges = dict(declared) if not (cfg.ranges or lists) else \
        {**{k: v for k, v in declared.items() if k == "lr"}, **cfg.ranges}
    space: dict[str, Range | tuple[float, ...]] = {}
    for key, (lo, hi) in ranges.items():
        if key not in lists and applies(key, entry):
            # a module:Class entry's key takes the scale the built-in optimizers declare
            number = SPECS[entry.name if spec is not None else APPLIES[key][0]].number(key)
            space[key] = search_range(key, lo, hi, number)
    return {**space, **{k: v for k, v in lists.items() if applies(k, entry)}}


def hyperparameter_sets(cfg: SweepConfig, entry: Entry | str) -> list[dict[str, Any]]:
    """Every point of the entry's grid, or its random trials, as optimizer keyword arguments
    (the entry's own hyperparameters included); `entry` may be given by its label. TPE:
    none, the trials are asked as the sweep runs (`optimlab.lab.tpe`)."""
    entry = cfg.entry(entry)
    if cfg.search == "tpe":
        return []
    if cfg.search == "random":
        space = search_space(cfg, entry)
        flat = [trial(cfg.search_seed, entry.label, i, space, DIGITS)
                for i in range(cfg.trials or 0)]
    else:
        grid = cfg.grid_for(entry)
        keys = sorted(grid)
        flat = [dict(zip(keys, values, strict=True))
                for values in itertools.product(*(grid[k] for k in keys))]
    return [with_values(entry, values) for values in flat]


def with_values(entry: Entry, flat: dict[str, Any]) -> dict[str, Any]:
    """The entry's keyword arguments with grid keys `flat` set: a pair's half (beta1) by the
    specification's `unflatten`, its other half the entry's or the class default. A
    module:Class entry's pairs are named as the built-in optimizers name them."""
    spec = SPECS.get(entry.name) or SPECS[APPLIES["beta1"][0]]
    pairs = [k for k in spec.hyperparameters if spec.flat_keys((k,)) != (k,)
             and set(spec.flat_keys((k,))) & set(flat)]
    given = {k: entry.hyperparameters.get(k, class_defaults(entry.optimizer_class())[k])
             for k in pairs}
    return {**entry.hyperparameters, **spec.unflatten({**spec.flatten(given), **flat})}


def check_points(entry: Entry, points: list[dict[str, Any]]) -> None:
    """A ValueError unless the entry's class accepts every point (its own validation, so
    the allowed ranges are written once, in the optimizer)."""
    cls = entry.optimizer_class()
    for point in points:
        check_hyperparameters(Entry(entry.name, point, entry.label), cls, point)


# Keys whose values lie in [0, 1): the grid is extended in 1 - value (0.9 -> 0.99).
UNIT_KEYS = ("momentum", "alpha", "beta1", "beta2")


def beyond(key: str, values: tuple[float, ...], side: str) -> float | None:
    """The next grid value past the `side` edge, one step of the grid's own ratio at that
    edge (log-spaced; in 1 - value for UNIT_KEYS); None when the edge is a bound."""
    vs = sorted(values)
    a, b = (vs[0], vs[1]) if side == "low" else (vs[-1], vs[-2])
    if key in UNIT_KEYS and side == "high":
        a, b = 1 - a, 1 - b  # distance to the bound 1
        new = None if a <= 0 or b <= a else 1 - a * a / b
    else:
        new = None if a <= 0 or b <= 0 else a * a / b
    if new is None or not math.isfinite(new):
        return None
    new = rounded_value(key, new)
    return new if new not in values and (key not in UNIT_KEYS or new < 1) else None


def one_shot(entry: Entry) -> dict[str, Any]:
    """The "one-shot" setting: the class defaults (the lecture's) and the entry's own
    hyperparameters, with η made explicit."""
    return {"lr": learning_rate(entry, {}, {}), **entry.hyperparameters}


_SCALARS = ("dataset", "model", "seeds", "steps", "epochs", "batch_size", "eval_every",
            "device", "dtype", "executor", "max_batch", "select", "data_dir", "download",
            "val_fraction", "schedule", "extend_edges", "task", "target_loss", "search",
            "trials", "search_seed", "batch", "halving", "min_steps")


def settings(toml: dict[str, Any], flags: dict[str, Any]) -> SweepConfig:
    """A SweepConfig from a parsed TOML table and command-line flags (None: not given).

    A flag overrides the file; a grid flag (`lr`, `beta1`, …) also overrides the key in
    the file's per-optimizer tables.
    """
    allowed = (*_SCALARS, "optimizers", "grid", *APPLIES)
    unknown = [k for k in toml if k not in allowed]
    if unknown:
        raise ValueError(f"Invalid key(s) in the config file: {', '.join(unknown)}; allowed: "
                         f"{', '.join(allowed)}")
    merged = {**toml, **{k: v for k, v in flags.items() if v is not None}}
    random = merged.get("search") in ("random", "tpe")
    if merged.get("batch") is not None:  # given, even at its default
        check_batch(merged.get("search", "grid"), merged["batch"])
    ranges = {k: parse_range(k, merged[k]) for k in APPLIES
              if random and isinstance(merged.get(k), str) and merged[k].count(":") == 1}
    grid = {k: parse_values(k, merged[k]) for k in APPLIES if k in merged and k not in ranges}
    tables = toml.get("grid", {})
    if not isinstance(tables, dict) or any(not isinstance(t, dict) for t in tables.values()):
        raise ValueError("Invalid [grid] in the config file; allowed: tables [grid.NAME] with "
                         "keys like lr = [1e-3, 1e-2]")
    given = {k for k in APPLIES if flags.get(k) is not None}
    for name, table in tables.items():
        ranged = [k for k, v in table.items() if isinstance(v, str) and v.count(":") == 1]
        if random and ranged:
            raise ValueError(f"Invalid [grid.{name}] {ranged[0]} = {table[ranged[0]]!r}: a "
                             "per-optimizer table holds lists; allowed: a list there, or the "
                             "range LO:HI for every optimizer (a flag or a top-level key)")
    per_optimizer = {name: {k: parse_values(k, v) for k, v in table.items() if k not in given}
                     for name, table in tables.items()}
    kwargs = {k: merged[k] for k in _SCALARS if k in merged}
    if "epochs" in kwargs and "steps" not in kwargs:
        kwargs["steps"] = None  # the budget in epochs replaces the default steps
    if "optimizers" in merged:
        kwargs["optimizers"] = merged["optimizers"]  # entries: a string or a list
    given_keys = (*grid, *ranges)
    if "lr" not in grid and not random:  # random search: η's declared range (search_space)
        grid["lr"] = parse_values("lr", DEFAULT_LR_GRID)
    cfg = SweepConfig(**kwargs, grid=grid, per_optimizer=per_optimizer, ranges=ranges)
    check_applies(cfg, given_keys)
    return cfg


def check_applies(cfg: SweepConfig, keys: tuple[str, ...]) -> None:
    """A ValueError for a grid key given for every optimizer that none of them sweeps (no
    entry has it, or each pins it): its values would be dropped without a word."""
    for key in keys:
        if not any(applies(key, e) for e in cfg.entries):
            raise ValueError(
                f"Invalid {key} grid {list(cfg.grid.get(key, cfg.ranges.get(key, ())))}: none "
                f"of the optimizers "
                f"{', '.join(cfg.labels)} sweeps {key}; allowed: {key} with an optimizer "
                f"that has it ({', '.join(APPLIES[key])}, or a module:Class taking it) and "
                "does not fix it in its entry")


def grown(stored: dict[str, Any], cfg: SweepConfig) -> dict[str, Any]:
    """The settings `stored` by a sweep, as `cfg` resumes them: a store written before random
    search existed holds a grid search; a random search with more trials keeps the stored
    ones (trial i does not depend on their number) and adds the rest."""
    before: dict[str, Any] = {"search": "grid", "trials": None, "search_seed": 0, "ranges": {},
                              "batch": TPE_BATCH, "halving": None, "min_steps": None}
    stored = {**before, **stored}
    # with halving, trials added after a rung was decided would skip it: refused instead
    if stored["search"] == cfg.search != "grid" and (cfg.trials or 0) >= stored["trials"] \
            and cfg.halving is None:
        stored["trials"] = cfg.trials
    return stored


def load_settings(path: str | Path | None, flags: dict[str, Any]) -> SweepConfig:
    """`settings` from the TOML file at `path` (None: flags only)."""
    return settings(read_toml(path) if path is not None else {}, flags)


def with_executor(cfg: SweepConfig, executor: str) -> SweepConfig:
    """The same sweep on another executor (the benchmark runs both)."""
    return replace(cfg, executor=executor)
