"""`suite`: every optimizer on a set of workloads, and performance profiles across them.

A workload is a model on a dataset with a validation-accuracy target and a step budget.
Each workload is one comparison (`lab.compare.Comparison`: every optimizer under every
seed, paired, resumable) in its own subfolder; the suite reads its records (each run's
steps to target, interpolated between evaluations by the run's summary record) and
computes the profiles and the lecture's claims about problem size (`analysis.size_claims`).
A workload that fails (bad data, a model that raises) is recorded as failed, with its
error, and the others go on.

The output folder:
- `<workload>/`: the comparison's folder (config.json, summary.json, curves.csv, ...);
- `suite.json`: {"settings", "workloads": [per workload, smallest first: its size, target,
  budget, status (and error), per optimizer the steps to target of each seed, their median
  and the final test accuracies, the paired comparisons and their fairness audit
  (`analysis.audit`), "tuned" (whether `tune_trials` tuned them), and the ranking over training:
  the optimizers' order at each evaluation and its flips], "profiles", "claims"};
  written after every workload, so an interrupted suite keeps what finished;
- `report.html`, `profiles.png`: drawn from suite.json by `optimlab.report.suite` (the
  command and the Python API call it; the lab never draws).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimlab.analysis import profiles, rankings
from optimlab.analysis.records import read_curves
from optimlab.analysis.size_claims import size_claims
from optimlab.analysis.stats import ALPHA, check_alpha
from optimlab.lab.compare import CallbackFactory, CompareConfig, Comparison
from optimlab.lab.entries import parse_list, texts
from optimlab.lab.experiment import DiskFull, output_folder, write_json
from optimlab.lab.tuning import tuned
from optimlab.optim import LECTURE
from optimlab.train.record import family

# Share of each workload's budget that `quick` runs: a smoke test, not a measurement.
QUICK = 0.1
TARGET_MEASURE = "time_to_target_step"  # compare's record: interpolated between evaluations


@dataclass(frozen=True)
class Workload:
    """One problem: `model` on `data` until validation accuracy `target_acc`, `steps` long.

    `model`: a model name, "module:callable", or a factory / nn.Module from Python;
    `data`: a dataset spec ("mnist1d", "npz:PATH", "module:callable"), a loaded Dataset,
    or (train, test) as `optimlab.data.from_objects` takes them; `lr`: η by optimizer
    label, over compare's defaults.
    """

    name: str
    model: Any
    data: Any
    target_acc: float
    steps: int
    batch_size: int = 100  # the MNIST-1D paper's
    eval_every: int = 25  # fine enough that the interpolated steps to target resolve ranks
    lr: Mapping[str, float] = field(default_factory=dict)


# The built-in suite, smallest model first. Targets are validation accuracies that compare's
# η per optimizer reach inside the budget on seed 0 (SGD last, near the end on the CNN), so
# that the profiles rank speed more than who reaches at all; budgets sized so that the
# default (7 seeds, 4 optimizers) fits 10 minutes on 2 cores (measured: docs/suite.md).
BUILTIN: dict[str, Workload] = {w.name: w for w in (
    Workload("mnist1d-logreg", "logreg", "mnist1d", target_acc=0.28, steps=300),
    Workload("digits-logreg", "logreg", "digits", target_acc=0.93, steps=200, batch_size=50),
    Workload("mnist1d-cnn", "cnn", "mnist1d", target_acc=0.7, steps=800),
    Workload("mnist1d-mlp", "mlp", "mnist1d", target_acc=0.5, steps=600),
    Workload("lookup-transformer", "transformer", "lookup", target_acc=0.7, steps=400),
)}


@dataclass(frozen=True)
class SuiteConfig:
    """Which workloads, which optimizers, how many seeds."""

    workloads: tuple[str, ...] = tuple(BUILTIN)  # built-in names or module:callable
    optimizers: tuple[str, ...] = LECTURE  # entries as compare takes them
    # 7: the fewest at which one workload's 3 measures, Holm-corrected, can reach α = 0.05
    # (2 x 3 / 2^7 < 0.05); a half's 2 workloads then give each claim 14 pairs
    seeds: int = 7
    steps: int | None = None  # every workload's budget instead of its own (tests, smoke runs)
    quick: bool = False  # QUICK of each budget and 2 seeds: shows the pipeline, decides little
    alpha: float = ALPHA  # level of every paired test
    # random-search trials per optimizer and workload before it is compared (`lab.tuning`:
    # equal budgets); None: compare's η per optimizer, untuned, which keeps the default
    # suite within its 10 minutes
    tune_trials: int | None = None

    def __post_init__(self) -> None:
        if not self.workloads:
            raise ValueError("Invalid workloads: none; allowed: built-in names "
                             f"({', '.join(BUILTIN)}) or module:callable")
        for w in self.workloads:
            if w not in BUILTIN and ":" not in w:
                raise ValueError(f"Invalid workload {w!r}; allowed: {', '.join(BUILTIN)} or "
                                 "module:callable returning a Workload")
        object.__setattr__(self, "optimizers", texts(parse_list(self.optimizers)))
        for name in ("seeds", "steps", "tune_trials"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"Invalid {name}: {value!r}; allowed: an integer >= 1")
        check_alpha(self.alpha)

    def budget(self, w: Workload) -> tuple[int, int]:
        """(steps, seeds) of workload `w` under these settings."""
        steps = self.steps or (max(1, round(w.steps * QUICK)) if self.quick else w.steps)
        return steps, 2 if self.quick and self.seeds > 2 else self.seeds


def workload(spec: str) -> Workload:
    """The built-in workload `spec`, or the Workload that `module:callable` returns (a dict
    of Workload's fields is taken too)."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    from optimlab._imports import import_object

    made = import_object(spec)()
    if isinstance(made, Mapping):
        made = Workload(**{"name": spec.replace(":", "-"), **made})
    if not isinstance(made, Workload):
        raise TypeError(f"Invalid workload {spec!r}: it returned a {type(made).__name__}; "
                        "allowed: an optimlab.lab.suite.Workload or a dict of its fields")
    return made


def _names(w: Workload) -> tuple[str, str, Any]:
    """(model name, dataset name, the loaded Dataset or None to load it by name)."""
    from optimlab import data, models
    from optimlab.data import Dataset

    model = w.model if isinstance(w.model, str) else models.register(w.model)
    if isinstance(w.data, str):
        return model, w.data, None
    if isinstance(w.data, Dataset):
        return model, w.data.name, w.data
    if isinstance(w.data, (tuple, list)) and len(w.data) == 2:
        return model, w.name, data.from_objects(w.name, w.data[0], w.data[1])
    raise TypeError(f"Invalid data of workload {w.name!r}: a {type(w.data).__name__}; "
                    "allowed: a dataset spec, a Dataset, or (train, test)")


def _comparison(w: Workload, cfg: SuiteConfig, out: Path) -> Comparison:
    """The workload's comparison, set up (data loaded and checked) in `out`; with
    `cfg.tune_trials`, each optimizer first tuned on validation (in `out`/tune)."""
    model, dataset, loaded = _names(w)
    steps, seeds = cfg.budget(w)
    labels = [e.label for e in parse_list(cfg.optimizers)]
    compare = CompareConfig(dataset=dataset, model=model, optimizers=cfg.optimizers,
                            seeds=seeds, steps=steps, batch_size=w.batch_size,
                            eval_every=min(w.eval_every, steps), target_acc=w.target_acc,
                            lr={k: v for k, v in w.lr.items() if k in labels})
    tuning = None
    if cfg.tune_trials:
        compare, tuning = tuned(compare, out / "tune", cfg.tune_trials, dataset=loaded)
    return Comparison(compare, out, command=f"optimlab suite ({w.name})", dataset=loaded,
                      alpha=cfg.alpha, tuning=tuning)


def parameters(comparison: Comparison) -> int:
    """The size of the workload's model: its number of parameters."""
    from optimlab import models

    ds, config = comparison.dataset, comparison.configs[0]
    model = models.build(config.model, tuple(ds.input_shape), int(ds.num_classes))
    return sum(p.numel() for p in model.parameters())


def _results(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per optimizer: hyperparameters, steps to target per seed, their median, final test
    accuracies, diverged runs."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        by_label.setdefault(family(r), []).append(r)
    return {label: {"hyperparameters": runs[0]["hyperparameters"],
                    "steps_to_target": [r[TARGET_MEASURE] for r in runs],
                    "median_steps_to_target": profiles.median_steps(
                        [r[TARGET_MEASURE] for r in runs]),
                    "final_test_acc": [r["final_test_acc"] for r in runs],
                    "diverged": sum(bool(r["diverged"]) for r in runs)}
            for label, runs in by_label.items()}


def run_workload(w: Workload, cfg: SuiteConfig, out: Path,
                 callbacks: CallbackFactory | None = None,
                 on_record: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """One workload's entry of suite.json (its comparison run in `out`)."""
    comparison = _comparison(w, cfg, out)
    steps, seeds = cfg.budget(w)
    entry = {"name": w.name, "model": comparison.configs[0].model,
             "dataset": comparison.configs[0].dataset, "parameters": parameters(comparison),
             "target_acc": w.target_acc, "steps": steps, "seeds": seeds, "folder": out.name}
    records = comparison.run(callbacks, on_record)
    results = _results(records)
    if any(s == 0 for r in results.values() for s in r["steps_to_target"]):
        raise ValueError(f"Invalid target_acc {w.target_acc:g} of workload {w.name!r}: the "
                         "initial model reaches it; allowed: a target that takes training")
    return entry | {"status": "finished", "optimizers": results,
                    "comparisons": comparison.comparisons, "audit": comparison.audit,
                    "tuned": bool(cfg.tune_trials),
                    "ranking_over_training": _ranking(records, out)}


def _ranking(records: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """The optimizers' order at each evaluation, from the comparison's curves.csv, and the
    pairs whose final order an earlier evaluation reversed (`analysis.rankings`)."""
    series = rankings.validation_series(records, read_curves(out / "curves.csv"))
    checkpoints = rankings.ranking_over_training(series)
    return {"measure": rankings.MEASURE, "checkpoints": checkpoints,
            "flips": rankings.flips(checkpoints)}


def _failed(spec: str, err: BaseException) -> dict[str, Any]:
    return {"name": spec, "status": "failed", "error": f"{type(err).__name__}: {err}"}


def summary(cfg: SuiteConfig, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """suite.json's content: the workloads (finished ones smallest first, failed ones
    after), the profiles of the median steps to target, and the claims' verdicts."""
    done = sorted((e for e in entries if e["status"] == "finished"),
                  key=lambda e: e["parameters"])
    steps = {e["name"]: {o: r["median_steps_to_target"] for o, r in e["optimizers"].items()}
             for e in done}
    fractions = {e["name"]: {o: [None if s is None else s / e["steps"]
                                 for s in r["steps_to_target"]]
                             for o, r in e["optimizers"].items()} for e in done}
    ratios = profiles.ratios(steps)
    taus = profiles.breakpoints(ratios)
    return {"settings": dataclasses.asdict(cfg),
            "workloads": done + [e for e in entries if e["status"] != "finished"],
            "profiles": {"measure": "median over seeds of the steps to the validation "
                                    "target, interpolated between evaluations",
                         "ratios": ratios, "tau": taus,
                         "fraction": profiles.profile(ratios, taus),
                         "tau_max": profiles.TAU_MAX, "score": profiles.score(ratios)},
            "claims": size_claims(fractions, [e["name"] for e in done], cfg.alpha,
                                  {e["name"]: e.get("audit") or {} for e in done})}


class Suite:
    """A suite set up in its output folder; `run` trains it workload after workload."""

    def __init__(self, cfg: SuiteConfig, out: str | Path) -> None:
        self.cfg, self.out = cfg, output_folder(out, "suite")
        self.entries: list[dict[str, Any]] = []

    def run(self, callbacks: CallbackFactory | None = None,
            on_record: Callable[[dict[str, Any]], None] | None = None,
            on_workload: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Every workload in turn; suite.json rewritten after each. A workload that raises
        (a full disk and KeyboardInterrupt aside) is recorded as failed and the next starts."""
        for spec in self.cfg.workloads:
            if on_workload:
                on_workload(spec)
            try:
                w = workload(spec)
                entry = run_workload(w, self.cfg, self.out / _folder(w.name), callbacks,
                                     on_record)
            except DiskFull:  # the next workload would fail the same way: stop, resumable
                raise
            except Exception as err:
                entry = _failed(spec, err)
            self.entries.append(entry)
            self._write()
        return self._write()

    def _write(self) -> dict[str, Any]:
        result = summary(self.cfg, self.entries)
        write_json(self.out / "suite.json", _finite(result))
        return result


def _folder(name: str) -> str:
    """A workload's name as a folder name: path separators and colons replaced."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def _finite(obj: Any) -> Any:
    """JSON has no inf or NaN: such numbers (a diverged metric) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def run_suite(cfg: SuiteConfig, out: str | Path, **hooks: Any) -> dict[str, Any]:
    """Set up and run a suite in one call (see `Suite`); suite.json's content."""
    return Suite(cfg, out).run(**hooks)
