"""Model-based search: Optuna's TPE sampler (Bergstra et al. 2011), K trials per vectorized job.

Per optimizer entry, one study asks K trials (`study.ask()`), the sweep trains the K
trials of every entry as one job of the executor, and each trial is told its validation
score (`study.tell()`); then the next K, until `trials`. TPE models each range as the
fraction of the way along the scale its optimizer declares (`Number.scale`: log η, ε and
weight decay, log(1 - β)), so its kernels are uniform where random search samples
uniformly, and a value is rounded as random search rounds it (`Range.at`). A list is a
categorical choice.

With successive halving, each round's K trials are one bracket (see `optimlab.lab.halving`):
its rungs are decided among them, and a trial stopped at a rung is told as Optuna's pruners
leave one: its score there reported at the rung's step, its state PRUNED.

Resume replays: the study is rebuilt by asking and telling the stored trials in their
order (the pruned ones as pruned, from their stored records), from the same sampler seed,
so that its state after the replay equals the state of the sweep that was never stopped.
The trials asked are stored (meta "trials") before they train; a replay that asks another
point (another Optuna) is refused, naming the trial.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from optimlab._imports import optional
from optimlab.lab.entries import Entry
from optimlab.lab.search import Range

MISSING = ("Invalid --search tpe: Optuna is not installed; allowed: pip install "
           "'optimlab[optuna]' (TPE's sampler)")


def require() -> Any:
    """The optuna module, or a one-line ImportError naming the extra it needs."""
    return optional("optuna", MISSING)


@contextmanager
def quiet() -> Iterator[Any]:
    """The optuna module, its log level at WARNING (no line per study or trial) until the
    block ends, then back to what it was."""
    optuna = require()
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(level)


def distributions(space: Mapping[str, Range | tuple[float, ...]]) -> dict[str, Any]:
    """Optuna's distribution per key: a range as its fraction in [0, 1] on its scale, a list
    as a categorical choice."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {key: FloatDistribution(0.0, 1.0) if isinstance(values, Range)
            else CategoricalDistribution(values) for key, values in sorted(space.items())}


def point(params: Mapping[str, Any], space: Mapping[str, Range | tuple[float, ...]],
          digits: int) -> dict[str, float]:
    """The hyperparameters a trial's `params` stand for (see `distributions`)."""
    return {key: values.at(params[key], digits) if isinstance(values, Range) else params[key]
            for key, values in sorted(space.items())}


# What a trial is told: its score, and the rung it was pruned at (None: it completed).
Outcome = tuple[float, int | None]


def outcome(summaries: list[dict[str, Any]]) -> Outcome:
    """A trial's `Outcome` from the records of its seeds: pruned at a rung when its runs
    stopped there (successive halving stops a configuration's seeds together)."""
    rungs = [s["pruned_at"] for s in summaries if s.get("pruned_at") is not None]
    return score(summaries), max(rungs) if rungs else None


def score(summaries: list[dict[str, Any]]) -> float:
    """What TPE maximizes for one configuration: its validation accuracy (regression: minus
    its validation loss), averaged over its seeds; a diverged seed counts as the worst
    (accuracy 0, loss infinite), so the sampler learns to avoid where it diverged."""
    values = []
    for s in summaries:
        regression = s.get("task") == "regression"
        value = s["final_val_loss"] if regression else s["final_val_acc"]
        if s["diverged"] or value is None or not math.isfinite(value):
            values.append(-math.inf if regression else 0.0)
        else:
            values.append(-value if regression else value)
    return sum(values) / len(values)


class Studies:
    """One TPE study per optimizer entry, asked and told in lockstep."""

    def __init__(self, entries: list[Entry], spaces: dict[str, dict[str, Any]], seed: int,
                 digits: int) -> None:
        self.spaces, self.digits = spaces, digits
        self.dists = {e.label: distributions(spaces[e.label]) for e in entries}
        with quiet() as optuna:  # no line per study created
            # one sampler per entry, each from the same seed: an entry's trials do not
            # depend on the other entries, and entries of one space start from the same points
            self.studies = {e.label: optuna.create_study(
                direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
                for e in entries}
        self.asked: dict[str, list[Any]] = {}

    def ask(self, k: int) -> dict[str, list[dict[str, float]]]:
        """K new trials per entry: label -> their points."""
        self.asked = {label: [study.ask(self.dists[label]) for _ in range(k)]
                      for label, study in self.studies.items()}
        return {label: [point(t.params, self.spaces[label], self.digits) for t in trials]
                for label, trials in self.asked.items()}

    def tell(self, outcomes: dict[str, list[Outcome]]) -> None:
        """Tell each trial last asked its outcome (label -> the outcomes in the order asked):
        a completed trial its score; a pruned one its score at its rung, reported there as
        an intermediate value, and the state PRUNED, as Optuna's pruners leave a trial (TPE
        ranks pruned trials by how far they got, then by that value)."""
        from optuna.trial import TrialState

        for label, trials in self.asked.items():
            for trial, (value, rung) in zip(trials, outcomes[label], strict=True):
                if rung is None:
                    self.studies[label].tell(trial, value)
                else:
                    trial.report(value, rung)
                    self.studies[label].tell(trial, state=TrialState.PRUNED)


# label -> the points of its trials, in the order asked
Points = dict[str, list[dict[str, float]]]


def search(studies: Studies, trials: int, batch: int, stored: Points,
           save: Callable[[Points], None], train: Callable[[Points], dict[str, list[Outcome]]]
           ) -> Points:
    """Ask `batch` trials per entry, `train` them (label -> each one's outcome), tell, until
    `trials` per entry; `stored`: the trials of an earlier run, replayed (`train` finds them
    finished), each checked against the point asked again; `save`: every trial asked so far,
    before it trains. Returns the trials."""
    done: Points = {label: [] for label in studies.studies}
    while (n := len(next(iter(done.values()), []))) < trials:
        asked = studies.ask(min(batch, trials - n))
        for label, points in asked.items():
            before = stored.get(label, [])[n:n + len(points)]
            if before and before != points[:len(before)]:
                i = n + next(i for i, (a, b) in enumerate(zip(before, points)) if a != b)
                raise ValueError(f"Invalid resume of --search tpe: trial {i} of {label} was "
                                 f"{before[i - n]} and is asked as {points[i - n]} now (another "
                                 "Optuna version?); allowed: a new --out")
            done[label] += points
        if any(len(done[label]) > len(stored.get(label, [])) for label in done):
            save(done)
        studies.tell(train(asked))
    return done
