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
from optimlab.lab.experiment import Experiment, read_toml
from optimlab.lab.policy import APPLIES, DEFAULT_LR_GRID
from optimlab.optim import SPECS
from optimlab.train.config import check_positive_int

OPTIMIZER_NAMES = tuple(SPECS)
# Values rounded to 3 significant digits: readable names, stable keys in the store.
DIGITS = 3


def parse_values(key: str, spec: Any) -> tuple[float, ...]:
    """`"LO:HI:N"` (N log-spaced values), `"a,b,c"`, a number or a list of numbers."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        values: list[float] = [float(spec)]
    elif isinstance(spec, (list, tuple)) and spec:
        values = [_number(key, v) for v in spec]
    elif isinstance(spec, str) and spec.count(":") == 2:
        values = _log_range(key, spec)
    elif isinstance(spec, str) and spec.strip():
        values = [_number(key, v) for v in spec.split(",")]
    else:
        raise ValueError(f"Invalid {key}: {spec!r}; allowed: LO:HI:N, a comma-separated "
                         "list of numbers, or a TOML list")
    rounded = tuple(dict.fromkeys(float(f"{v:.{DIGITS}g}") for v in values))
    if any(not math.isfinite(v) or v < 0 for v in rounded):
        raise ValueError(f"Invalid {key}: {spec!r}; allowed: finite values >= 0")
    return rounded


def _number(key: str, v: Any) -> float:
    try:
        if isinstance(v, bool):
            raise ValueError
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {key}: {v!r} is not a number") from None


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


EXECUTORS = ("vectorized", "sequential", "processes", "ray")
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
        for key in (*self.grid, *(k for g in self.per_optimizer.values() for k in g)):
            if key not in APPLIES:
                raise ValueError(f"Invalid grid key: {key!r}; allowed: {', '.join(APPLIES)}")
        if self.extend_edges and self.select != "val":
            raise ValueError("Invalid extend_edges without select 'val': the edges are those "
                             "of the selected point; allowed: --extend-edges with --select val")
        for e in self.entries:  # every value, before anything trains
            check_points(e, hyperparameter_sets(self, e))

    def grid_for(self, entry: Entry | str) -> dict[str, tuple[float, ...]]:
        """The keys and values swept for an optimizer entry (or its label)."""
        entry = self.entry(entry)
        own = {k: v for k, v in self.grid.items() if applies(k, entry)}
        return {**own, **self.per_optimizer.get(entry.label, {})}


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


def hyperparameter_sets(cfg: SweepConfig, entry: Entry | str) -> list[dict[str, Any]]:
    """Every point of the entry's grid as optimizer keyword arguments (the entry's own
    hyperparameters included); `entry` may be given by its label."""
    entry = cfg.entry(entry)
    grid = cfg.grid_for(entry)
    keys = sorted(grid)
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point: dict[str, Any] = dict(zip(keys, values, strict=True))
        if "beta1" in point or "beta2" in point:
            b1, b2 = entry.hyperparameters.get(
                "betas", class_defaults(entry.optimizer_class())["betas"])
            point["betas"] = [point.pop("beta1", b1), point.pop("beta2", b2)]
        points.append({**entry.hyperparameters, **point})
    return points


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
    new = float(f"{new:.{DIGITS}g}")
    return new if new not in values and (key not in UNIT_KEYS or new < 1) else None


def one_shot(entry: Entry) -> dict[str, Any]:
    """The "one-shot" setting: the class defaults (the lecture's) and the entry's own
    hyperparameters, with η made explicit."""
    return {"lr": learning_rate(entry, {}, {}), **entry.hyperparameters}


_SCALARS = ("dataset", "model", "seeds", "steps", "epochs", "batch_size", "eval_every",
            "device", "dtype", "executor", "max_batch", "select", "data_dir", "download",
            "val_fraction", "schedule", "extend_edges", "task", "target_loss")


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
    grid = {k: parse_values(k, merged[k]) for k in APPLIES if k in merged}
    tables = toml.get("grid", {})
    if not isinstance(tables, dict) or any(not isinstance(t, dict) for t in tables.values()):
        raise ValueError("Invalid [grid] in the config file; allowed: tables [grid.NAME] with "
                         "keys like lr = [1e-3, 1e-2]")
    given = {k for k in APPLIES if flags.get(k) is not None}
    per_optimizer = {name: {k: parse_values(k, v) for k, v in table.items() if k not in given}
                     for name, table in tables.items()}
    kwargs = {k: merged[k] for k in _SCALARS if k in merged}
    if "epochs" in kwargs and "steps" not in kwargs:
        kwargs["steps"] = None  # the budget in epochs replaces the default steps
    if "optimizers" in merged:
        kwargs["optimizers"] = merged["optimizers"]  # entries: a string or a list
    if "lr" not in grid:
        grid["lr"] = parse_values("lr", DEFAULT_LR_GRID)
    return SweepConfig(**kwargs, grid=grid, per_optimizer=per_optimizer)


def load_settings(path: str | Path | None, flags: dict[str, Any]) -> SweepConfig:
    """`settings` from the TOML file at `path` (None: flags only)."""
    return settings(read_toml(path) if path is not None else {}, flags)


def with_executor(cfg: SweepConfig, executor: str) -> SweepConfig:
    """The same sweep on another executor (the benchmark runs both)."""
    return replace(cfg, executor=executor)
