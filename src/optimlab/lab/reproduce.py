"""`reproduce`: published results re-run under a pinned protocol, each with a verdict.

An experiment (one module of `optimlab.lab.reproductions`) names its source and what the
source reports, trains under the source's settings (documented choices, each with its
reason, where the source states none), and turns the recorded numbers into checks: the
source's claim, the published value or shape, ours, and whether it holds. The verdict is
"reproduced" when every check holds, "not reproduced" when none does, "partly" otherwise.

Without `full`, an experiment runs a reduced budget, small enough for the tests to run;
`full` is the source's budget. The output folder:
- the usual records: `summary.json` (compare's format) and, for trained runs, the store
  `sweep.sqlite`, which keeps their curves (`optimlab export csv` writes curves.csv;
  running the same experiment into the same folder resumes: finished runs are not
  trained again);
- `reproduction.json`: experiment, source, what it reports, budget, data, protocol (each
  setting with where it comes from), checks, verdict, the numbers behind the checks,
  command, date and environment;
- `report.html`: the verdict panel and the experiment's figure (`optimlab.report.reproduce`).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optimlab.lab.environment import environment
from optimlab.lab.executors import run_sequential
from optimlab.lab.experiment import differences, output_folder, write_json
from optimlab.lab.store import Store, config_key, run_name
from optimlab.lab.sweep import write_outputs
from optimlab.train import TrainConfig

VERDICTS = ("reproduced", "partly", "not reproduced")


@dataclass(frozen=True)
class Check:
    """One statement of the source, held against our recorded numbers."""

    claim: str  # the source's statement, one line
    published: str  # the published value or shape
    ours: str  # our numbers, as text
    holds: bool


@dataclass(frozen=True)
class Setting:
    """One setting of the protocol and where it comes from."""

    name: str
    value: Any
    origin: str  # "source: §6.1" or "choice: <the reason>"


@dataclass
class Outcome:
    """What an experiment hands back: the data it used, its protocol, the checks, the
    numbers they were computed from, and the series of its figure."""

    data: str
    protocol: list[Setting]
    checks: list[Check]
    numbers: dict[str, Any]
    # figure: {"title", "xlabel", "ylabel", "log_y", "panels": {panel: {label: [[x, y], ...]}}}
    figure: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """Where and how an experiment runs."""

    out: Path
    full: bool  # the source's budget; False: the reduced one
    data_dir: str | None = None
    download: bool = False
    log: Callable[[str], None] = lambda line: None


@dataclass(frozen=True)
class Experiment:
    name: str
    source: str  # paper, section, figure or table
    reports: str  # what the source reports
    module: str  # optimlab.lab.reproductions.<module>, imported only when it runs

    def run(self, ctx: Context) -> Outcome:
        return importlib.import_module(f"optimlab.lab.reproductions.{self.module}").run(ctx)


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment(
        "mnist1d-table",
        "Greydanus & Kobak, \"Scaling down deep learning with MNIST-1D\" (2020), table of "
        "test accuracies (Adam, lr 1e-2, batch 100, 6000 steps)",
        "test accuracy on MNIST-1D: logistic regression ≈ 32 %, MLP ≈ 68 %, CNN ≈ 94 %",
        "mnist1d_table"),
    Experiment(
        "adam-logreg-mnist",
        "Kingma & Ba, \"Adam\" (ICLR 2015), §6.1 and Figure 1 (left)",
        "L2-regularised multiclass logistic regression on MNIST, minibatch 128, step size "
        "α/√t: Adam converges about as fast as SGD with Nesterov momentum, and both faster "
        "than AdaGrad, in training loss",
        "adam_logreg_mnist"),
    Experiment(
        "adam-bias-correction",
        "Kingma & Ba, \"Adam\" (ICLR 2015), §3 and §6.4, Figure 4",
        "without bias correction, β₂ close to 1 gives large early steps and unstable early "
        "training (loss after few epochs much worse, worst at large α); with it, β₂ close "
        "to 1 is as good as or better than smaller β₂",
        "adam_bias_correction"),
    Experiment(
        "wilson-separable",
        "Wilson, Roelofs, Stern, Srebro & Recht, \"The Marginal Value of Adaptive Gradient "
        "Methods in Machine Learning\" (NeurIPS 2017), §3.3",
        "on a linearly separable least-squares problem, GD/SGD reach zero test error while "
        "AdaGrad, RMSprop and Adam label every test point positive: test error 1 − p, "
        "close to one half",
        "wilson_separable"),
    Experiment(
        "tuning-budget",
        "Sivaprasad, Mai, Vogels, Jaggi & Fleuret, \"Optimizer Benchmarking Needs to Account "
        "for Hyperparameter Tuning\" (ICML 2020), expected best of k random trials",
        "with random search, the best optimizer depends on the tuning budget: Adam (adaptive "
        "methods) is the best choice at small budgets; as the budget grows the differences "
        "shrink",
        "tuning_budget"),
    Experiment(
        "lion-lr",
        "Chen et al., \"Symbolic Discovery of Optimization Algorithms\" (NeurIPS 2023), §5",
        "Lion's learning rate is typically 3–10× smaller than AdamW's for the same result "
        "(its update, a sign, has a larger norm)",
        "lion_lr"),
    Experiment(
        "schedulefree-cosine",
        "Defazio et al., \"The Road Less Scheduled\" (NeurIPS 2024), §4",
        "Schedule-Free AdamW, without a schedule, matches or beats AdamW under a tuned "
        "cosine schedule; AdamW at a constant η falls behind both",
        "schedulefree_cosine"),
    Experiment(
        "muon-transformer",
        "Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein, \"Muon: An optimizer for "
        "hidden layers in neural networks\" (2024), the NanoGPT speedrun",
        "Muon on a transformer's hidden matrices (AdamW on embeddings, head and vectors) "
        "reaches AdamW's validation loss in fewer steps: 1.35× sample efficiency",
        "muon_transformer"),
)}


def verdict(checks: Sequence[Check]) -> str:
    held = sum(c.holds for c in checks)
    if checks and held == len(checks):
        return "reproduced"
    return "not reproduced" if held == 0 else "partly"


def verdict_line(checks: Sequence[Check]) -> str:
    """E.g. "partly: 2 of 3 checks hold (… ; not: …)"."""
    failed = [c.claim for c in checks if not c.holds]
    line = f"{verdict(checks)}: {sum(c.holds for c in checks)} of {len(checks)} checks hold"
    return line + (f" (not: {'; '.join(failed)})" if failed else "")


def experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"Invalid experiment: {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def train(ctx: Context, configs: Sequence[TrainConfig], dataset: Any) -> list[dict[str, Any]]:
    """Train `configs` one after another into the folder's store (finished runs are kept
    and not trained again) and rewrite summary.json; returns the stored runs
    of `configs` (see `Store.runs`), in their order."""
    store = Store(ctx.out)
    try:
        store.plan(configs, "reproduce")
        todo = store.unfinished(configs)
        store.mark_running(todo)

        def finished(result: Any) -> None:
            store.finish(result.config, result.record, result.curves)
            r = result.record
            ctx.log(f"{r['model']} {run_name(result.config)}: final train loss "
                    f"{r['final_train_loss']}, test acc {r['final_test_acc']}")

        if todo:
            run_sequential(todo, dataset, finished)
        runs = store.runs()  # read once: every run's curves
        write_outputs(store, runs=runs)
        by_key = {r["key"]: r for r in runs}
        return [by_key[config_key(c)] for c in configs]
    finally:
        store.close()


def _check_resume(out: Path, settings: dict[str, str]) -> None:
    """Only the same experiment under the same budget continues a folder's store."""
    store = Store(out)
    try:
        stored = store.meta().get("reproduce")
        diff = differences(stored, settings) if stored is not None else []
        if diff:
            raise ValueError(f"Invalid --out {str(out)!r}: it holds another reproduction "
                             f"({'; '.join(diff)}); allowed: the same experiment and budget "
                             "(to resume) or another --out")
        store.set_meta("reproduce", settings)
    finally:
        store.close()


def run(name: str, out: str | Path | None, *, full: bool = False, data_dir: str | None = None,
        download: bool = False, command: str = "",
        log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run experiment `name` into `out` (None: runs/reproduce-NAME-<timestamp>) and write
    reproduction.json (its report is
    `optimlab.report.reproduce.render(out)`); returns the reproduction record."""
    exp = experiment(name)
    out = output_folder(out, f"reproduce-{name}")
    _check_resume(out, {"experiment": name, "budget": "full" if full else "reduced"})
    outcome = exp.run(Context(out, full, data_dir, download, log))
    record = {
        "experiment": exp.name, "source": exp.source, "reports": exp.reports,
        "budget": "full" if full else "reduced", "data": outcome.data,
        "protocol": [asdict(s) for s in outcome.protocol],
        "checks": [asdict(c) for c in outcome.checks],
        "verdict": verdict(outcome.checks), "verdict_line": verdict_line(outcome.checks),
        "numbers": outcome.numbers, "figure": outcome.figure, "command": command,
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "environment": environment(),
    }
    write_json(out / "reproduction.json", record)
    return record
