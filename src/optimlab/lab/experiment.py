"""What every experiment of many runs shares (compare, sweep, reproduce, the Python API).

- `Experiment`: the common part of the settings (data, model, optimizers, budget, seeds),
  checked on construction; each experiment's config extends it.
- `output_folder`: `--out`, or `runs/<command>-<timestamp>`; created, never a file.
- `write_json`: records replaced atomically, so a crash leaves the old file or the new.
- `check_resume`: an output folder is only continued by the identical experiment; the
  error names every setting that differs.
- `DiskFull` / `guard_disk`: a full disk while writing records becomes one line naming
  the store, the runs that are safe in it, and that the same command resumes.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from optimlab.lab.entries import Entry, parse_list, texts
from optimlab.optim import LECTURE
from optimlab.train import TrainConfig, schedules
from optimlab.train.config import check_positive_int, check_targets
from optimlab.train.evaluation import TASKS

# Used when a config gives neither `steps` nor `epochs` (compare's default): in 1500 steps
# the ranking is settled (every optimizer is past the 80% target) and the default run
# stays short on 2 busy cores (docs/lab.md, 'Measured: the default run'). The MNIST-1D
# paper's 6000 steps: `--steps 6000`.
DEFAULT_STEPS = 1500


@dataclass(frozen=True)
class Experiment:
    """Settings every experiment has. Subclasses redeclare a field to change its default."""

    dataset: str = "mnist1d"  # offline, seconds to generate, and separates the optimizers
    model: str = "mlp"  # a name in optimlab.models.MODELS, or module:callable (models.user)
    # entries [LABEL=]NAME[(key=value, ...)] (see lab.entries); default: the lecture's four
    optimizers: tuple[str, ...] = LECTURE
    seeds: int = 1  # seeds 0..seeds-1
    steps: int | None = None  # None: `epochs` if given, else DEFAULT_STEPS
    epochs: int | None = None  # full passes over train (incomplete last batch dropped)
    batch_size: int = 100  # the MNIST-1D paper's batch size
    eval_every: int = 100  # steps between evaluations; evaluation is not timed
    device: str = "cpu"  # the models are tiny: a GPU mostly adds launch overhead
    data_dir: str | None = None  # where dataset files live (MNIST-1D needs none)
    download: bool = False  # fetch missing files (checksum-verified); never without asking
    val_fraction: float = 0.1  # held out of train for selection and "time to target"
    schedule: str = "constant"  # η fixed, as the lecture's formulas (see train/schedules.py)
    task: str = "classification"  # cross-entropy and accuracy; "regression": squared error
    target_loss: float | None = None  # val loss for "time to target" (regression's target)

    # Settings that change how runs are computed, not which runs exist: a resume may
    # change them (e.g. another executor after a crash).
    HOW: ClassVar[tuple[str, ...]] = ("data_dir", "download")

    def __post_init__(self) -> None:
        _check_types(self)
        object.__setattr__(self, "schedule", schedules.canonical(self.schedule))
        parsed = parse_list(self.optimizers)  # a comma-separated string or a list of entries
        object.__setattr__(self, "optimizers", texts(parsed))
        object.__setattr__(self, "_entries", parsed)
        if self.task not in TASKS:
            raise ValueError(f"Invalid task: {self.task!r}; allowed: {', '.join(TASKS)}")
        check_targets(None, self.target_loss)
        for name in ("seeds", "batch_size", "eval_every"):
            check_positive_int(name, getattr(self, name))
        for name in ("steps", "epochs"):
            check_positive_int(name, getattr(self, name), optional=True)
        if self.steps is not None and self.epochs is not None:
            raise ValueError("Invalid steps and epochs together; allowed: at most one of them")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"Invalid val_fraction: {self.val_fraction!r}; allowed: a "
                             "fraction in [0, 1)")

    @property
    def entries(self) -> tuple[Entry, ...]:
        """The optimizer entries, parsed and checked: one run family each."""
        return self._entries  # type: ignore[attr-defined, no-any-return]

    @property
    def labels(self) -> tuple[str, ...]:
        """The run families' names (records, tables and per-family settings use them)."""
        return tuple(e.label for e in self.entries)

    def entry(self, label: str | Entry) -> Entry:
        """The optimizer entry with `label` (an Entry is returned as it is)."""
        if isinstance(label, Entry):
            return label
        for e in self.entries:
            if label in (e.label, e.text):
                return e
        raise ValueError(f"Invalid optimizer label {label!r}; allowed: {', '.join(self.labels)}")

    def steps_for(self, n_train: int) -> int:
        """Optimizer steps per run on a training set of `n_train` examples."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return self.epochs * (n_train // self.batch_size)
        return DEFAULT_STEPS

    def run_config(self, entry: Entry, hyperparameters: dict[str, Any], seed: int,
                   n_train: int, **extra: Any) -> TrainConfig:
        """The TrainConfig of `entry` at `hyperparameters` under `seed`, with these
        settings' data, model and budget; `extra`: the fields an experiment adds (dtype)."""
        return TrainConfig(dataset=self.dataset, model=self.model, optimizer=entry.name,
                           label=entry.label, hyperparameters=hyperparameters,
                           steps=self.steps_for(n_train), batch_size=self.batch_size,
                           seed=seed, eval_every=self.eval_every, device=self.device,
                           schedule=self.schedule, task=self.task,
                           target_loss=self.target_loss, **extra)

    def identity(self) -> dict[str, Any]:
        """The settings that define which runs exist (what a resume must match), as JSON."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)
                if f.name not in self.HOW}


# Settings a TOML file may give with any type: (name, types allowed, what to say).
_TYPES = (("dataset", (str,), "a dataset name, npz:PATH or module:callable"),
          ("model", (str,), "a model name or module:callable"),
          ("optimizers", (str, list, tuple), "a comma-separated string or a list of entries"),
          ("device", (str,), "cpu, cuda or cuda:N"),
          ("data_dir", (str, type(None)), "a folder's path"),
          ("download", (bool,), "true or false"),
          ("val_fraction", (int, float), "a fraction in [0, 1)"))


def _check_types(cfg: Experiment) -> None:
    """A ValueError naming the first setting of the wrong type (a TOML `dataset = 3`), which
    would otherwise fail later with a message that names neither it nor its value."""
    for name, types, allowed in _TYPES:
        value = getattr(cfg, name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"Invalid {name}: {value!r} ({type(value).__name__}); allowed: "
                             f"{allowed}")


def _jsonable(value: Any) -> Any:
    """Tuples as lists, recursively, so a setting equals itself after a JSON round trip."""
    return json.loads(json.dumps(value, allow_nan=False))


def load_dataset(cfg: Experiment, dataset: Any = None) -> Any:
    """`dataset` (tests pass tiny ones) or `data.load` of the settings, checked against the
    batch size, the task and the model (which must take its inputs and give the task's
    outputs). Raises ValueError/TypeError/OSError for bad settings."""
    from optimlab import data, models
    from optimlab.train import check_model

    if cfg.model not in models.MODELS and not models.is_user_model(cfg.model):
        raise ValueError(f"Invalid model: {cfg.model!r}; allowed: {', '.join(models.MODELS)} "
                         "or module:callable returning an nn.Module")

    ds = dataset if dataset is not None else data.load(
        cfg.dataset, data_dir=cfg.data_dir, download=cfg.download,
        val_fraction=cfg.val_fraction)
    ds = data.for_task(ds, cfg.task)
    n_train = len(ds.y_train)
    if cfg.batch_size > n_train:
        raise ValueError(f"Invalid batch_size: {cfg.batch_size}; allowed: <= {n_train}, "
                         f"the number of training examples of {cfg.dataset}")
    check_model(TrainConfig(model=cfg.model, optimizer="sgd", task=cfg.task,
                            device=cfg.device), ds)
    return ds


def out_path(out: str | Path | None, command: str) -> Path:
    """`out`, or a new `runs/<command>-<timestamp>` (suffixed when taken); not created."""
    if out is not None:
        return Path(out).expanduser()
    base = Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def read_toml(path: str | Path) -> dict[str, Any]:
    """The table in the TOML file at `path`; ValueError naming the file when it is not TOML."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the dependency is declared for 3.10 only
        import tomli as tomllib

    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"Invalid config file {str(path)!r}: {e}") from None
    except OSError as e:  # missing, a folder, unreadable
        raise ValueError(f"Invalid --config {str(path)!r}: {e.strerror or e}; allowed: a "
                         "readable TOML file") from None


def output_folder(out: str | Path | None, command: str) -> Path:
    """`out_path(out, command)`, created; a ValueError when it is a file."""
    path = out_path(out, command)
    if path.exists() and not path.is_dir():
        raise ValueError(f"Invalid --out {str(path)!r}: a file; allowed: a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, obj: Any) -> None:
    """Atomically (write, then rename): a crash leaves the old file or the new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`name: stored -> current` for every setting that differs (missing ones included)."""
    missing = object()
    return [f"{k} {stored.get(k, '(unset)')!r} there, {current.get(k, '(unset)')!r} now"
            for k in sorted(set(stored) | set(current))
            if stored.get(k, missing) != current.get(k, missing)]


def check_resume(out: Path, stored: dict[str, Any] | None, cfg: Experiment, what: str) -> None:
    """A ValueError unless the folder's `stored` settings (a config's `asdict`, None for a
    new folder) define the same runs as `cfg`: only the identical experiment resumes."""
    if stored is None:
        return
    diff = differences({k: v for k, v in stored.items() if k not in cfg.HOW}, cfg.identity())
    if diff:
        raise ValueError(f"Invalid --out {str(out)!r}: the {what} stored there has other "
                         f"settings ({'; '.join(diff)}); allowed: the same settings (to resume) "
                         "or another --out")


class DiskFull(OSError):
    """The disk filled while writing records: nothing finished is lost; resume later."""


def is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, sqlite3.Error) and "disk is full" in str(err)


@contextmanager
def guard_disk(store: Path, safe_runs: Callable[[], int], command: str) -> Iterator[None]:
    """Turn a full disk inside the block into `DiskFull` with a one-line message."""
    try:
        yield
    except Exception as err:
        if not is_disk_full(err) or isinstance(err, DiskFull):
            raise
        try:
            safe = f"{safe_runs()} finished runs are safe there"
        except Exception:  # the count reads the store; say so rather than guess
            safe = "the finished runs written before are safe there"
        full = DiskFull(f"the disk is full while writing {store}: {safe}; free space and run "
                        f"the same {command} command again to resume")
        full.errno = errno.ENOSPC
        raise full from None
