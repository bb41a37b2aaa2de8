"""Model-based search (`--search tpe`): the scales, batches of K asks before the tells, the
seed, the anytime prefix, resume after an interrupt, each round a bracket of successive
halving with its pruned trials told as pruned, the missing extra and bad input."""

from __future__ import annotations

import json
import math
import signal
import sys

import numpy as np
import pytest
import summaries
from conftest import exit_code
from test_halving import assert_same_runs, kill_9_after_rungs, stored
from test_interrupt import signal_when_checkpointed
from test_sweep import DS, comparable, one_thread  # noqa: F401 - the fixture: one torch thread

import optimlab
from optimlab.analysis.records import read_summary
from optimlab.lab import executors, tpe
from optimlab.lab.grid import DIGITS, TPE_BATCH, SweepConfig, search_space, settings
from optimlab.lab.store import Store
from optimlab.lab.sweep import Sweep


def studies(seed: int = 0, **ranges: str) -> tpe.Studies:
    """Adam's TPE studies over `ranges` (key: "LO:HI")."""
    cfg = settings({}, {"search": "tpe", "trials": 1, "optimizers": "adam", **ranges})
    return tpe.Studies(cfg.entries, {"adam": search_space(cfg, cfg.entries[0])}, seed, DIGITS)


def bowl(points: tpe.Points) -> dict[str, list[tpe.Outcome]]:
    """A score with its peak at η = 1e-2 on the log scale, each trial completed (no
    training)."""
    return {label: [(-(math.log10(p["lr"]) + 2) ** 2, None) for p in ps]
            for label, ps in points.items()}


def test_a_range_is_its_fraction_on_the_declared_scale():
    cfg = settings({}, {"search": "tpe", "trials": 1, "optimizers": "adam",
                        "lr": "1e-4:1e-2", "beta2": "0.9:0.999"})
    space = search_space(cfg, cfg.entries[0])
    # halfway in log η is 1e-3; halfway in log(1 - β₂) is 1 - 10^-2
    assert tpe.point({"lr": 0.5, "beta2": 0.5}, space, DIGITS) == {"beta2": 0.99, "lr": 1e-3}
    assert tpe.point({"lr": 0.0, "beta2": 1.0}, space, DIGITS) == {"beta2": 0.999, "lr": 1e-4}


def test_trials_are_asked_k_at_a_time_and_told_before_the_next_k():
    seen = []

    def train(points):
        seen.append(len(points["adam"]))
        return bowl(points)

    done = tpe.search(studies(lr="1e-5:1"), 7, 3, {}, lambda points: None, train)
    assert seen == [3, 3, 1] and len(done["adam"]) == 7
    study = studies(lr="1e-5:1")
    tpe.search(study, 7, 3, {}, lambda points: None, train)
    assert [t.value for t in study.studies["adam"].trials] == [v for v, _ in bowl(done)["adam"]]


def test_tpe_learns_where_the_score_is_high_and_random_search_does_not():
    done = tpe.search(studies(lr="1e-5:1"), 40, 1, {}, lambda points: None, bowl)
    # after its 10 random start-up trials, TPE samples near the peak: the last 20 lie
    # within half a decade of 1e-2 far more often than a log-uniform draw (1/5) would
    late = [abs(math.log10(p["lr"]) + 2) < 0.5 for p in done["adam"][20:]]
    assert sum(late) >= 12


def test_the_seed_reproduces_and_the_first_n_of_2n_trials_are_the_same_n():
    def run(trials, seed=0, batch=2):
        return tpe.search(studies(seed, lr="1e-5:1", beta1="0.5:0.99"), trials, batch, {},
                          lambda points: None, bowl)["adam"]

    assert run(12) == run(24)[:12] == run(12)
    assert run(12, seed=1) != run(12)


def test_a_replay_that_asks_another_point_is_refused_naming_the_trial():
    stored = {"adam": [{"lr": 0.5}]}
    with pytest.raises(ValueError, match=r"trial 0 of adam was \{'lr': 0.5\} and is asked as"):
        tpe.search(studies(lr="1e-5:1e-1"), 2, 1, stored, lambda points: None, bowl)


def test_the_score_averages_seeds_and_a_diverged_seed_counts_as_the_worst():
    ok = {"diverged": False, "final_val_acc": 0.8, "final_val_loss": 0.5}
    bad = {"diverged": True, "final_val_acc": 0.9, "final_val_loss": None}
    assert tpe.score([ok, bad]) == pytest.approx(0.4)
    regression = {"task": "regression"}
    assert tpe.score([ok | regression]) == -0.5
    assert tpe.score([bad | regression, ok | regression]) == -math.inf


TINY = {"dataset": "blobs", "model": "logreg", "optimizers": "sgd,adam", "lr": "1e-3:1",
        "steps": 10, "batch_size": 20, "eval_every": 10, "search": "tpe"}


def sweep(out, trials, batch=2, **more):
    cfg = settings({}, {**TINY, "trials": trials, "batch": batch, **more})
    return Sweep(cfg, out, dataset=DS)


def test_a_sweep_trains_k_trials_per_job_and_grows_anytime(tmp_path, monkeypatch):
    jobs = []
    execute = Sweep.execute
    monkeypatch.setattr(Sweep, "execute", lambda self, planned, *halve: jobs.append(
        len(planned["grid"])) or execute(self, planned, *halve))
    first = sweep(tmp_path / "a", 3).run()
    assert jobs == [4, 2]  # two optimizers × K = 2, then the last trial of each
    assert len(first) == 6
    grown = {r["run"]: r for r in sweep(tmp_path / "a", 6).run()}
    fresh = sweep(tmp_path / "b", 6)
    fresh.run()
    # the three done stay (same records, clocks included; "edge" marks the best so far),
    # and the six are those of an uninterrupted sweep
    assert len(grown) == 12
    assert all(grown[r["run"]] | {"edge": 0} == r | {"edge": 0} for r in first)
    assert Store(tmp_path / "a").meta()["tpe_trials"] == fresh.points
    assert fresh.points["adam"][:3] == Store(tmp_path / "b").meta()["tpe_trials"]["adam"][:3]


def test_an_interrupted_sweep_resumes_to_the_trials_of_one_never_stopped(tmp_path,
                                                                         monkeypatch):
    whole = sweep(tmp_path / "whole", 5)
    whole.run()
    finished = Sweep._finished
    count = iter(range(100))

    def stop_in_the_second_job(self, result):
        finished(self, result)
        if next(count) == 5:  # the second job's second run: its others never finished
            raise KeyboardInterrupt

    monkeypatch.setattr(Sweep, "_finished", stop_in_the_second_job)
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path / "cut", 5).run()
    monkeypatch.undo()
    # the first job's four runs and the second's two finished ones: an interrupt commits
    # the runs waiting in their batch (`Store.flush`) before it ends the sweep
    assert Store(tmp_path / "cut").finished_count() == 6
    resumed = sweep(tmp_path / "cut", 5)
    runs = resumed.run()
    assert resumed.points == whole.points
    assert sorted(r["run"] for r in runs) == sorted(r["run"] for r in whole.finished)


@pytest.mark.slow
def test_a_sweep_killed_9_resumes_to_the_trials_and_results_of_one_never_stopped(tmp_path):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())

    def argv(out):
        return ["sweep", "--dataset", f"npz:{tmp_path / 'blobs.npz'}", "--model", "mlp",
                "--optimizers", "adam", "--search", "tpe", "--lr", "1e-3:1e-1", "--trials", "4",
                "--batch", "2", "--steps", "200", "--batch-size", "20", "--eval-every", "50",
                "--threads", "1", "--out", str(out)]

    cut = tmp_path / "cut"
    done = signal_when_checkpointed(argv(cut), cut / "sweep.sqlite", signal.SIGKILL)
    assert done.returncode == -signal.SIGKILL
    assert Store(cut).finished_count() < 4
    assert exit_code(argv(cut)) == 0 and exit_code(argv(tmp_path / "whole")) == 0
    assert Store(cut).meta()["tpe_trials"] == Store(tmp_path / "whole").meta()["tpe_trials"]
    assert comparable(cut) == comparable(tmp_path / "whole")


def test_python_tpe_sweep_selects_on_val(tmp_path):
    result = optimlab.sweep("logreg", DS, "adam", grid={"lr": "1e-3:1e-1"}, search="tpe",
                            trials=3, batch=3, select="val", seeds=2, steps=10,
                            batch_size=20, eval_every=10, out=tmp_path, report=False)
    runs = Store(tmp_path).runs()
    assert sum("grid" in r["roles"] for r in runs) == 3
    assert sum("tuned" in r["roles"] for r in runs) == 2
    assert len(result.rows) == len(runs)


def cli(npz, out, *more):
    return ["sweep", "--dataset", f"npz:{npz}", "--model", "logreg", "--optimizers", "adam",
            "--search", "tpe", "--lr", "1e-3:1e-1", "--steps", "10", "--batch-size", "20",
            "--eval-every", "10", "--out", str(out), *more]


def test_cli_tpe_sweep_and_a_resume_with_another_batch_is_refused(npz, tmp_path, capsys):
    out = tmp_path / "o"
    assert exit_code(cli(npz, out, "--trials", "2", "--batch", "2")) == 0
    assert len(read_summary(out / "summary.json")) == 2
    assert (out / "report.html").exists()
    capsys.readouterr()
    assert exit_code(cli(npz, out, "--trials", "2", "--batch", "1")) == 2
    assert "batch 2 there, 1 now" in capsys.readouterr().err


@pytest.mark.parametrize("argv,match", [
    (["--trials", "4", "--lr", "1e-1:1e-4"], "Invalid lr: '1e-1:1e-4': LO must be below HI"),
    (["--trials", "4", "--beta1", "0.5:1"], "Invalid beta1: 0.5:1 lies outside"),
    (["--trials", "4", "--batch", "0"], "argument --batch: '0'; allowed: an integer"),
    (["--lr", "1e-3:1e-1"], "Invalid --search tpe without --trials"),
    (["--trials", "4", "--lr", "1e-3,1e-2"], "Invalid --trials 4 for adam: every key it "
     "searches is a list (lr), which tpe search would only draw from with repeats"),
    (["--trials", "4", "--lr", "1e-3:1e-1", "--eps", "1e-8,-1"], "Invalid eps"),
])
def test_bad_input_exits_2_with_one_line_naming_it(npz, tmp_path, capsys, argv, match):
    out = tmp_path / "o"
    argv = ["sweep", "--dataset", f"npz:{npz}", "--optimizers", "adam", "--search", "tpe",
            *argv, "--out", str(out)]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("argv,search", [(["--search", "random", "--trials", "2"], "random"),
                                         ([], "grid")])
def test_batch_without_tpe_is_refused_even_at_its_default(tmp_path, capsys, argv, search):
    for k in ("3", str(TPE_BATCH)):
        assert exit_code(["sweep", *argv, "--batch", k, "--out", str(tmp_path / "o")]) == 2
        assert f"Invalid --batch {k} with --search {search}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Invalid --batch 3 with --search random"):
        SweepConfig(search="random", trials=2, batch=3)


def test_without_optuna_tpe_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    assert exit_code(["sweep", "--search", "tpe", "--trials", "2",
                      "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'optimlab[optuna]'" in err


# TPE with successive halving: rounds of 5 trials, two seeds, rungs at 10 and 30 of 40 steps
# keep 5 -> 2 -> 1 trials of each round; the third round is asked after 10 trials were told,
# TPE's start-up count, so the model built from the pruned trials picks it
ROUND = 5
HALVED = dict(dataset="blobs", model="mlp", optimizers=("adam",), grid={},
              ranges={"lr": (1e-4, 1.0)}, search="tpe", trials=3 * ROUND, batch=ROUND,
              seeds=2, steps=40, batch_size=20, eval_every=10, dtype="float64", halving=3,
              min_steps=10, max_batch=16)


def halved_sweep(out, **more) -> list[tpe.Studies]:
    """Run the halved TPE sweep (with settings `more`) into `out`; the studies it told."""
    told, real = [], tpe.Studies.tell

    def tell(self, outcomes):
        told.append(self)
        real(self, outcomes)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tpe.Studies, "tell", tell)
        Sweep(SweepConfig(**HALVED | more), out, dataset=DS).run()
    return told


@pytest.fixture(scope="module")
def halved(tmp_path_factory):
    """The halved TPE sweep: its folder and its study."""
    out = tmp_path_factory.mktemp("halved")
    return out, halved_sweep(out)[-1].studies["adam"]


def rounds(out) -> list[list[str]]:
    """The points (JSON text) of each round's trials, in the order asked."""
    points = [json.dumps(p, sort_keys=True) for p in Store(out).meta()["tpe_trials"]["adam"]]
    return [points[i:i + ROUND] for i in range(0, len(points), ROUND)]


def test_tpe_with_halving_decides_every_rung_within_each_round(halved):
    out, _ = halved
    by_round = rounds(out)
    assert len(by_round) == 3 and len({p for r in by_round for p in r}) == 3 * ROUND
    decided = Store(out).rungs()
    for points in by_round:
        mine = [d for d in decided if json.dumps(d["hyperparameters"], sort_keys=True) in points]
        for rung, ranked, going in ((10, ROUND, 2), (30, 2, 1)):
            at = [d for d in mine if d["rung"] == rung]
            # ranked among the round's trials only: ranks 1..n within every round
            assert sorted(d["rank"] for d in at) == list(range(1, ranked + 1))
            assert sum(d["survives"] for d in at) == going
    summary = summaries.summary(out)
    runs = summary["runs"]
    assert sorted(r["pruned_at"] or 0 for r in runs) == [0] * 6 + [10] * 18 + [30] * 6
    assert all(r["steps_trained"] == (r["pruned_at"] or 40) for r in runs)
    assert summary["member_steps"] == 6 * 40 + 18 * 10 + 6 * 30
    assert summary["rungs"] == decided


def test_the_rung_table_of_tpe_rounds_counts_them_together_and_names_the_best_winner(halved):
    from optimlab.report.rungs import rung_rows

    decided = Store(halved[0]).rungs()
    rows = {int(r[0]): r for r in rung_rows(decided)}
    assert [rows[rung][2] for rung in (10, 30)] == ["6 of 15", "3 of 6"]
    for rung, row in rows.items():
        # the best of the rung's scores, whichever round it was ranked in
        assert row[4] == f"{max(d['val_acc'] for d in decided if d['rung'] == rung):.2%}"


def told(out) -> list[tuple[str, float, dict[int, float]]]:
    """What the stored runs say each trial is, in the order asked: its state, its seeds'
    mean validation accuracy (a diverged seed: 0), and its intermediate values (a pruned
    trial: that mean at its rung)."""
    runs = summaries.runs(out)
    found = []
    for point in (p for r in rounds(out) for p in r):
        mine = [r for r in runs if json.dumps(r["hyperparameters"], sort_keys=True) == point]
        assert len(mine) == 2
        value = sum(0.0 if r["diverged"] else r["final_val_acc"] for r in mine) / 2
        rung = max((r["pruned_at"] for r in mine if r["pruned_at"]), default=None)
        found.append(("PRUNED", value, {rung: value}) if rung else ("COMPLETE", value, {}))
    return found


def decisions(out) -> list[tuple]:
    return [(d["rung"], d["hyperparameters"], d["rank"], d["survives"], d["diverged"])
            for d in Store(out).rungs()]


def study_says(study) -> list[tuple[str, float, dict[int, float]]]:
    return [(t.state.name, t.value, t.intermediate_values) for t in study.trials]


def test_tpe_is_told_each_trial_as_its_stored_runs_say_pruned_or_complete(halved):
    out, study = halved
    expected = told(out)
    assert [s for s, *_ in expected].count("PRUNED") == 3 * (ROUND - 1)
    assert study_says(study) == expected
    # a pruned trial's value is the score its rung ranked it on
    ranked = {(d["rung"], json.dumps(d["hyperparameters"], sort_keys=True)): d["val_acc"]
              for d in Store(out).rungs()}
    points = [p for r in rounds(out) for p in r]
    assert all(ranked[(rung, point)] == pytest.approx(value)
               for point, (_, _, reported) in zip(points, expected, strict=True)
               for rung, value in reported.items())
    space = search_space(SweepConfig(**HALVED), SweepConfig(**HALVED).entries[0])
    assert [json.dumps(tpe.point(t.params, space, DIGITS), sort_keys=True)
            for t in study.trials] == points


def test_tpe_with_halving_interrupted_mid_round_resumes_to_the_same_trials_and_decisions(
        halved, tmp_path, monkeypatch):
    decide, step = Sweep._decide, executors.Group.step
    taken = []
    monkeypatch.setattr(Sweep, "_decide", lambda self, *a: taken.append(a[0]) or decide(self, *a))

    def stop(self, t, on_finish):
        if taken == [10, 30, 10] and t == 20:  # the second round, past its first rung
            raise KeyboardInterrupt
        step(self, t, on_finish)

    monkeypatch.setattr(executors.Group, "step", stop)
    with pytest.raises(KeyboardInterrupt):
        Sweep(SweepConfig(**HALVED), tmp_path, dataset=DS).run()
    monkeypatch.undo()
    assert [d["rung"] for d in Store(tmp_path).rungs()].count(10) == 2 * ROUND
    studies = halved_sweep(tmp_path)
    whole, study = halved
    assert Store(tmp_path).meta()["tpe_trials"] == Store(whole).meta()["tpe_trials"]
    assert decisions(tmp_path) == decisions(whole)
    assert_same_runs(stored(tmp_path), stored(whole))
    again = study_says(studies[-1].studies["adam"])
    assert [(s, list(i)) for s, _, i in again] == [(s, list(i)) for s, _, i in study_says(study)]
    assert [v for _, v, i in again for v in (v, *i.values())] == pytest.approx(
        [v for _, v, i in study_says(study) for v in (v, *i.values())], rel=1e-9)


def test_tpe_with_halving_takes_the_same_trials_and_decisions_on_the_sequential_executor(
        halved, tmp_path):
    sequential = halved_sweep(tmp_path, executor="sequential")[-1].studies["adam"]
    whole, study = halved
    assert Store(tmp_path).meta()["tpe_trials"] == Store(whole).meta()["tpe_trials"]
    assert decisions(tmp_path) == decisions(whole)
    assert [t.state.name for t in sequential.trials] == [t.state.name for t in study.trials]


def test_tpe_with_halving_killed_9_mid_round_resumes_to_one_never_stopped(
        tmp_path, npz):
    def argv(out):
        return ["sweep", "--dataset", f"npz:{npz}", "--model", "logreg", "--optimizers",
                "adam", "--search", "tpe", "--lr", "1e-4:1", "--trials", str(3 * ROUND),
                "--batch", str(ROUND), "--seeds", "2", "--steps", "40", "--eval-every", "10",
                "--batch-size", "20", "--halving", "--min-steps", "10", "--dtype", "float64",
                "--threads", "1", "--out", str(out)]

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    # the fifth decision: the third round's first rung, the round TPE asked from the 10
    # trials told before it, 8 of them pruned
    kill_9_after_rungs(argv(killed), tmp_path / "flag", 5)
    assert [d["rung"] for d in Store(killed).rungs()].count(10) == 3 * ROUND
    assert exit_code(argv(killed)) == 0 and exit_code(argv(whole)) == 0
    assert Store(killed).meta()["tpe_trials"] == Store(whole).meta()["tpe_trials"]
    assert decisions(killed) == decisions(whole)
    assert_same_runs(stored(killed), stored(whole))
