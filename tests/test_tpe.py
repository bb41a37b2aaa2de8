"""Model-based search (`--search tpe`): the scales, batches of K asks before the tells, the
seed, the anytime prefix, resume after an interrupt, the missing extra and bad input."""

from __future__ import annotations

import math
import signal
import sys

import numpy as np
import pytest
from conftest import exit_code
from test_interrupt import signal_when_checkpointed
from test_sweep import DS, comparable, one_thread  # noqa: F401 - the fixture: one torch thread

import optimlab
from optimlab.analysis.records import read_summary
from optimlab.lab import tpe
from optimlab.lab.grid import DIGITS, TPE_BATCH, SweepConfig, search_space, settings
from optimlab.lab.store import Store
from optimlab.lab.sweep import Sweep


def studies(seed: int = 0, **ranges: str) -> tpe.Studies:
    """Adam's TPE studies over `ranges` (key: "LO:HI")."""
    cfg = settings({}, {"search": "tpe", "trials": 1, "optimizers": "adam", **ranges})
    return tpe.Studies(cfg.entries, {"adam": search_space(cfg, cfg.entries[0])}, seed, DIGITS)


def bowl(points: tpe.Points) -> dict[str, list[float]]:
    """A score with its peak at η = 1e-2 on the log scale (no training)."""
    return {label: [-(math.log10(p["lr"]) + 2) ** 2 for p in ps] for label, ps in points.items()}


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
    assert [t.value for t in study.studies["adam"].trials] == bowl(done)["adam"]


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
    monkeypatch.setattr(Sweep, "execute", lambda self, planned: jobs.append(
        len(planned["grid"])) or execute(self, planned))
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
