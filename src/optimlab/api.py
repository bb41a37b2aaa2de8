"""The Python API for notebooks: `optimlab.compare(...)`, `optimlab.sweep(...)` and
`optimlab.suite(...)`.

The same experiments as the CLI's, with Python objects where the CLI takes names:

- `model`: a built-in name ("mlp"), "module:callable", a no-argument factory returning an
  `nn.Module`, or an `nn.Module` (deep-copied for every run, so all start from its weights);
- `data`: a built-in name ("digits", "mnist1d"), "module:callable", or `(train, test)` where
  each is a `torch.utils.data.Dataset` of (x, y) pairs, a `DataLoader`, or a pair of
  tensors (x, y) — or `(x_train, y_train, x_test, y_test)`;
- `optimizers`: entries as on the command line (`"slow=adam(betas=(0.5, 0.999))"`), or
  `torch.optim.Optimizer` subclasses (a class of a notebook's own works).

Both write the same output folder as the CLI (records, curves, report) and return a
`Result`: the summary rows, the curves, `.plot()` (a matplotlib Figure, shown inline by
Jupyter; no global backend is touched) and `.out`, the folder.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimlab._imports import optional, register_object

__all__ = ["Result", "compare", "suite", "sweep"]

# Records' curves, long format (as curves.csv): run, step, train_seconds, split, metric, value.
CurveRow = dict[str, Any]


@dataclass
class Result:
    """What an experiment wrote, read back: plain records, nothing trained again."""

    rows: list[dict[str, Any]]  # one summary record per run (summary.json)
    curves: list[CurveRow] = field(repr=False)  # one dict per row of curves.csv's format
    out: Path = Path(".")  # the output folder
    report: Path | None = None  # its report.html, when one was written
    # compare's paired comparisons, one object per (a, b, measure), as summary.json has them
    # holds them and the report shows them (see optimlab.analysis.stats)
    comparisons: list[dict[str, Any]] = field(default_factory=list, repr=False)
    # compare's fairness audit (optimlab.analysis.audit): the pairs whose comparisons read
    # "undecided", and why
    audit: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (pandas is an optional extra)."""
        pd = optional("pandas", "to_pandas needs pandas: pip install 'optimlab[pandas]'; the "
                      "rows are plain dicts in .rows")
        return pd.DataFrame(self.rows)

    def curves_pandas(self) -> Any:
        """The curves (long format) as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.curves)

    def plot(self) -> Any:
        """The report's curves as a matplotlib Figure (shown inline when it is a cell's
        value): minibatch loss and test accuracy (regression: test loss) against steps, and
        loss against training time; one colour per run family, the band over its seeds."""
        from optimlab.report.plots import curves_figure
        from optimlab.report.records import curves_from_rows

        rows: dict[str, dict[tuple[str, str], list[tuple[float, float, float]]]] = {}
        for r in self.curves:
            rows.setdefault(r["run"], {}).setdefault((r["split"], r["metric"]), []).append(
                (r["step"], r["train_seconds"], r["value"]))
        return curves_figure(self.rows, curves_from_rows(rows))

    def _repr_html_(self) -> str:
        from html import escape

        from optimlab.report.table import COLUMNS, table_rows

        head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>"
                       for row in table_rows(self.rows))
        return (f"<p>{len(self.rows)} runs in <code>{escape(str(self.out))}</code></p>"
                f"<table><tr>{head}</tr>{body}</table>")


def _read_curves(path: Path) -> list[CurveRow]:
    with path.open(newline="") as f:
        return [{"run": r["run"], "step": int(r["step"]),
                 "train_seconds": float(r["train_seconds"]), "split": r["split"],
                 "metric": r["metric"], "value": float(r["value"])} for r in csv.DictReader(f)]


def _store_rows(runs: list[dict[str, Any]]) -> list[CurveRow]:
    """The same rows from a store's runs (a sweep writes no curves.csv unless asked)."""
    return [{"run": r["run"], "step": p.step, "train_seconds": p.train_seconds,
             "split": p.split, "metric": p.metric, "value": p.value}
            for r in runs for p in r["curves"]]


def _model_name(model: Any) -> str:
    from optimlab import models

    return model if isinstance(model, str) else models.register(model)


def _optimizer_entries(optimizers: str | Sequence[Any]) -> str | list[str]:
    """Entries as strings: classes become import paths (registered when not importable)."""
    if isinstance(optimizers, str):
        return optimizers
    out = []
    for o in optimizers:
        if isinstance(o, type):
            out.append(register_object(o))
        elif isinstance(o, str):
            out.append(o)
        else:
            raise TypeError(f"Invalid optimizer {o!r}; allowed: an entry string such as "
                            "'adam(betas=(0.5, 0.999))' or a torch.optim.Optimizer subclass")
    return out


def _dataset(data: Any, val_fraction: float) -> tuple[str, Any]:
    """(the settings' dataset name, a loaded Dataset or None to load it by name)."""
    from optimlab import data as data_module
    from optimlab.data import Dataset
    from optimlab.data.checks import check_dataset

    if isinstance(data, str):
        return data, None
    if isinstance(data, Dataset):
        check_dataset(data)
        return data.name, data
    if callable(data) and not isinstance(data, (tuple, list)):
        data = data()
    if isinstance(data, (tuple, list)) and len(data) == 4:
        data = ((data[0], data[1]), (data[2], data[3]))
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"Invalid data of type {type(data).__name__}; allowed: a dataset "
                        "name, (train, test), (x_train, y_train, x_test, y_test), or a "
                        "callable returning (train, test)")
    name = "python:data"
    return name, data_module.from_objects(name, data[0], data[1], val_fraction=val_fraction)


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def _threads(threads: int | None) -> Any:
    import contextlib

    import torch

    @contextlib.contextmanager
    def scope() -> Any:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads or previous)
        try:
            yield
        finally:
            torch.set_num_threads(previous)
    return scope()


def compare(model: Any = None, data: Any = None, optimizers: str | Sequence[Any] | None = None,
            *, steps: int | None = None, epochs: int | None = None,
            batch_size: int | None = None, seeds: int | None = None,
            lr: dict[str, float] | None = None, task: str | None = None,
            target_acc: float | None = None, target_loss: float | None = None,
            eval_every: int | None = None, val_fraction: float | None = None,
            schedule: str | None = None, device: str | None = None,
            out: str | Path | None = None, report: bool = True,
            threads: int | None = 1, alpha: float = 0.05,
            tune_trials: int | None = None) -> Result:
    """Train each optimizer entry under each seed on `data` with `model`; the `Result`,
    with its paired comparisons at level `alpha` in `.comparisons` and their fairness audit
    in `.audit`.

    Every argument left None takes `optimlab compare`'s default (`CompareConfig`); `lr`
    maps labels to η; `tune_trials`: first tune each entry by that many random-search
    trials on validation (`optimlab compare --tune --tune-trials N`); `out` defaults to
    runs/compare-<timestamp>; `report=False` skips the HTML report. Bad settings raise
    ValueError/TypeError before anything trains.
    """
    from optimlab.analysis.records import read_summary
    from optimlab.lab.compare import CompareConfig, Comparison
    from optimlab.lab.experiment import out_path

    fraction = CompareConfig.val_fraction if val_fraction is None else val_fraction
    name, ds = _dataset(data, fraction) if data is not None else (None, None)
    cfg = CompareConfig(**_given(
        dataset=name, model=_model_name(model) if model is not None else None,
        optimizers=_optimizer_entries(optimizers) if optimizers is not None else None,
        steps=steps, epochs=epochs, batch_size=batch_size, seeds=seeds, lr=lr, task=task,
        target_acc=target_acc, target_loss=target_loss, eval_every=eval_every,
        val_fraction=val_fraction, schedule=schedule, device=device))
    folder = out_path(out, "compare")
    with _threads(threads):
        tuning = None
        if tune_trials is not None:
            from optimlab.lab.tuning import tuned

            cfg, tuning = tuned(cfg, folder / "tune", tune_trials, dataset=ds)
        comparison = Comparison(cfg, folder, command="optimlab.compare(...)", dataset=ds,
                                alpha=alpha, tuning=tuning)
        comparison.run()
    rows = read_summary(folder / "summary.json")  # as stored: plain JSON data
    page = None
    if report:
        from optimlab import report as report_module

        page = report_module.render(folder)
    return Result(rows, _read_curves(folder / "curves.csv"), folder, page,
                  comparison.comparisons, comparison.audit)


def sweep(model: Any = None, data: Any = None, optimizers: str | Sequence[Any] | None = None,
          *, grid: dict[str, Any] | None = None, per_optimizer: dict[str, Any] | None = None,
          steps: int | None = None, epochs: int | None = None, batch_size: int | None = None,
          seeds: int | None = None, select: str | None = None, task: str | None = None,
          target_loss: float | None = None, eval_every: int | None = None,
          val_fraction: float | None = None, executor: str | None = None,
          dtype: str | None = None, max_batch: int | None = None,
          schedule: str | None = None, device: str | None = None,
          search: str | None = None, trials: int | None = None,
          search_seed: int | None = None, batch: int | None = None,
          halving: int | None = None, min_steps: int | None = None,
          out: str | Path | None = None, report: bool = True, png: bool = False,
          threads: int | None = 1) -> Result:
    """Sweep hyperparameter grids per optimizer entry; the `Result` (its rows: every run).

    `grid` maps keys (lr, momentum, alpha, beta1, beta2, eps, weight_decay) to values:
    "LO:HI:N" (log-spaced), "a,b,c" or a list; default η grid 1e-4:1:9. With
    search="random", `trials` configurations per entry are sampled from "LO:HI" ranges
    (none given: each optimizer's declared search space), seeded by `search_seed`; with
    search="tpe", Optuna's TPE asks them, `batch` per job. `per_optimizer`
    maps a label to its own grid. `halving` (η, e.g. 3) with `min_steps`: successive
    halving from a first rung at `min_steps`. `report`: write report.html, and with `png` its
    figures as PNG files. Other arguments as `optimlab sweep`'s flags (None: the default).
    Python models and data run in this process: executor "vectorized" (default) or
    "sequential".
    """
    from optimlab.lab.experiment import out_path
    from optimlab.lab.grid import SweepConfig, settings
    from optimlab.lab.sweep import Sweep

    fraction = SweepConfig.val_fraction if val_fraction is None else val_fraction
    name, ds = _dataset(data, fraction) if data is not None else (None, None)
    model_name = _model_name(model) if model is not None else None
    entries = _optimizer_entries(optimizers) if optimizers is not None else None
    if executor in ("processes", "ray") and (ds is not None or not isinstance(model, str | None)
                                             or any("python:" in e for e in entries or ())):
        raise ValueError(f"Invalid executor {executor!r} with Python objects: other processes "
                         "cannot see them; allowed: vectorized or sequential, or name them as "
                         "module:callable")
    toml: dict[str, Any] = dict(grid or {})
    if per_optimizer:
        toml["grid"] = per_optimizer
    flags = _given(dataset=name, model=model_name, optimizers=entries, steps=steps,
                   epochs=epochs, batch_size=batch_size, seeds=seeds, select=select,
                   task=task, target_loss=target_loss, eval_every=eval_every,
                   val_fraction=val_fraction, executor=executor, dtype=dtype,
                   max_batch=max_batch, schedule=schedule, device=device, search=search,
                   trials=trials, search_seed=search_seed, batch=batch, halving=halving,
                   min_steps=min_steps)
    cfg = settings(toml, flags)
    folder = out_path(out, "sweep")
    with _threads(threads):
        run = Sweep(cfg, folder, command="optimlab.sweep(...)", dataset=ds)
        rows = run.run()
    page = None
    if report:
        from optimlab.report.sweep import render

        page = render(folder, run.finished, png=png)
    return Result(rows, _store_rows(run.finished), folder, page)


def suite(workloads: Sequence[Any] | None = None, optimizers: str | Sequence[Any] | None = None,
          *, seeds: int | None = None, steps: int | None = None, quick: bool = False,
          alpha: float | None = None, out: str | Path | None = None,
          threads: int | None = 1, tune_trials: int | None = None) -> dict[str, Any]:
    """Every optimizer on a set of workloads (`optimlab suite`); suite.json's content, with
    report.html and profiles.png drawn next to it. `workloads`: built-in names,
    "module:callable", or `optimlab.lab.suite.Workload` objects (default: the built-in
    suite); `tune_trials`: tune each optimizer on each workload first (`--tune-trials`)."""
    from optimlab.lab.experiment import out_path
    from optimlab.lab.suite import Suite, SuiteConfig
    from optimlab.report.suite import render

    specs = None if workloads is None else tuple(
        w if isinstance(w, str) else register_object(lambda w=w: w) for w in workloads)
    cfg = SuiteConfig(**_given(workloads=specs, seeds=seeds, steps=steps, alpha=alpha,
                               tune_trials=tune_trials,
                               optimizers=_optimizer_entries(optimizers)
                               if optimizers is not None else None), quick=quick)
    folder = out_path(out, "suite")
    with _threads(threads):
        summary = Suite(cfg, folder).run()
    render(folder)
    return summary
