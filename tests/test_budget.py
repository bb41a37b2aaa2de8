"""Budget curves: a sweep's expected_best.json is the expected best of k of its trials,
checked against every subset of the trials counted out; the sweep's page draws it; an older
sweep's folder gets it from its store."""

from __future__ import annotations

import itertools
import json
import statistics

import pytest
from test_sweep import DS as BLOBS

from optimlab.analysis.budget import best_at, budget_curves, trial_scores
from optimlab.cli import main
from optimlab.lab.grid import SweepConfig
from optimlab.lab.sweep import Sweep

# sgd at η = 1e3 diverges on the blobs with the MLP (test_sweep's table of members)
GRID = {"sgd": {"lr": (0.01, 0.1, 1.0, 1e3)}, "adam": {"lr": (1e-3, 1e-2, 0.1)}}


@pytest.fixture(scope="module")
def sweep_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("budget") / "sweep"
    Sweep(SweepConfig(dataset="blobs", model="mlp", optimizers=("sgd", "adam"), grid={},
                      per_optimizer=GRID, seeds=2, steps=30, batch_size=20, eval_every=10),
          out, dataset=BLOBS).run()
    return out


def by_hand(records: list[dict]) -> dict[str, list[float]]:
    """Per optimizer, the mean over every k-subset of its trials of the subset's best, where
    a trial's score is its seeds' mean final validation accuracy, a diverged seed's 0."""
    seeds: dict[tuple[str, str], list[float]] = {}
    for r in records:
        point = (r["optimizer"], repr(sorted(r["hyperparameters"].items())))
        seeds.setdefault(point, []).append(0.0 if r["diverged"] else r["final_val_acc"])
    trials: dict[str, list[float]] = {}
    for (name, _), values in seeds.items():
        trials.setdefault(name, []).append(sum(values) / len(values))
    return {name: [statistics.fmean(max(c) for c in itertools.combinations(x, k))
                   for k in range(1, len(x) + 1)] for name, x in trials.items()}


def test_expected_best_json_is_the_best_of_k_over_every_subset_of_the_trials(sweep_out):
    records = json.loads((sweep_out / "summary.json").read_text())
    assert any(r["diverged"] for r in records)  # the worst score is exercised
    stored = json.loads((sweep_out / "expected_best.json").read_text())
    assert stored["measure"] == "final_val_acc" and stored["higher_is_better"] is True
    assert stored["trials"] == {"sgd": 4, "adam": 3} and stored["diverged"]["sgd"] == 2
    expected = by_hand(records)
    assert set(stored["expected_best"]) == set(expected)
    for name, curve in expected.items():
        assert stored["expected_best"][name] == pytest.approx(curve, abs=1e-12)
        low, high = stored["band"][name]["low"], stored["band"][name]["high"]
        assert all(lo - 1e-12 <= c <= hi + 1e-12 for lo, c, hi in zip(low, curve, high))
    assert best_at(stored["expected_best"], 4) == ["sgd"]  # adam has 3 trials only


def test_reruns_are_not_trials_and_a_sweep_without_validation_has_no_curve():
    def run(name, lr, roles, acc, diverged=False, seed=0):
        return {"roles": roles, "config": {"optimizer": name, "hyperparameters": {"lr": lr}},
                "summary": {"optimizer": name, "final_val_acc": acc, "diverged": diverged,
                            "seed": seed}}
    runs = [run("adam", 0.1, ["grid"], 0.5), run("adam", 0.1, ["grid", "tuned"], 0.7, seed=1),
            run("adam", 0.1, ["tuned"], 0.9, seed=2), run("adam", 1.0, ["grid"], 0.8, True),
            run("adam", 1e-3, ["one-shot"], 0.9)]
    assert trial_scores(runs) == {"adam": [pytest.approx(0.6), 0.0]}
    curves = budget_curves(runs)
    assert curves["expected_best"]["adam"] == pytest.approx([0.3, 0.6])
    no_val = [r | {"summary": r["summary"] | {"final_val_acc": None}} for r in runs]
    assert budget_curves(no_val) is None


def test_the_sweep_page_draws_the_budget_figure_also_for_an_older_folder(sweep_out, capsys):
    (sweep_out / "expected_best.json").unlink()  # as a sweep written before it existed
    assert main(["report", str(sweep_out)]) == 0
    page = (sweep_out / "report.html").read_text()
    assert "expected best validation accuracy vs number of trials" in page
    assert 'id="budget"' in page and "Trials: sgd 4 (2 diverged runs), adam 3" in page
    assert (sweep_out / "expected_best.png").is_file()
