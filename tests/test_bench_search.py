"""The search race of `optimlab sweep-bench --race` at a tiny scale (never timing): the
target, the rows' settings, the peer's search space and pruning, and bad input."""

from __future__ import annotations

import json

import optuna
import pytest
from conftest import exit_code
from test_sweep import DS, one_thread  # noqa: F401 - the fixture: one torch thread

from optimlab.bench.search import RaceConfig, race_peer, run_race, suggest, summarize
from optimlab.lab.grid import search_space, settings

CASE = {"dataset": "blobs", "model": "mlp", "optimizers": "adam", "search": "random",
        "steps": 20, "batch_size": 20, "eval_every": 5, "lr": "1e-3:1e-1"}


def case(trials: int, **more) -> RaceConfig:
    return RaceConfig(settings({}, {**CASE, "trials": trials}), **more)


def test_a_row_reaches_the_target_at_its_first_trial_that_scores_as_high():
    trace = [{"t": 1.0, "score": 0.5}, {"t": 2.0, "score": 0.7}, {"t": 3.0, "score": 0.6},
             {"t": 4.0, "score": 0.8}]
    row = summarize(5.0, trace, 0.7)
    assert row["best_by_trial"] == [0.5, 0.7, 0.7, 0.8]
    assert (row["time_to_target_s"], row["trials_to_target"]) == (2.0, 2)
    assert summarize(5.0, trace, 0.9)["time_to_target_s"] is None


def test_the_extra_settings_reach_the_random_and_tpe_rows_and_never_the_target():
    rows = case(4, batches=(1, 2), extra={"eval_every": 10}).configs()
    assert list(rows) == ["full", "random", "tpe-k1", "tpe-k2"]
    assert rows["full"].eval_every == 5 and rows["full"].search == "random"
    assert all(rows[r].eval_every == 10 for r in ("random", "tpe-k1", "tpe-k2"))
    assert (rows["tpe-k2"].search, rows["tpe-k2"].batch) == ("tpe", 2)
    # without extra settings the random row would be the full sweep again
    assert "random" not in case(4).configs()


def test_the_peer_samples_the_declared_scales_as_an_optuna_user_writes_them():
    cfg = settings({}, {**CASE, "trials": 1, "beta1": "0.5:0.99"})
    space = search_space(cfg, cfg.entries[0])
    trial = optuna.create_study().ask()
    flat = suggest(trial, space)
    u = trial.distributions["1-beta1"]
    assert u.log and (u.low, u.high) == (pytest.approx(0.01), 0.5)
    assert trial.distributions["lr"] == optuna.distributions.FloatDistribution(
        1e-3, 1e-1, log=True)
    assert flat["beta1"] == 1 - trial.params["1-beta1"] and flat["lr"] == trial.params["lr"]


def test_the_peer_reports_every_evaluation_and_prunes(monkeypatch):
    reported, asked = [], []
    monkeypatch.setattr(optuna.trial.Trial, "report",
                        lambda self, value, step: reported.append(step))
    monkeypatch.setattr(optuna.trial.Trial, "should_prune",
                        lambda self: asked.append(1) or len(asked) == 5)
    _, trace = race_peer(case(2).sweep, DS)
    # trial 0: every evaluation (steps 5, 10, 15, 20; asked after the first three);
    # trial 1 is pruned when asked after its second
    assert reported == [5, 10, 15, 20, 5, 10] and len(trace) == 1


def test_a_tiny_race_sets_the_target_from_the_full_sweep(tmp_path):
    result = run_race(case(3, batches=(1, 3)), DS)
    rows = result["rows"]
    assert list(rows) == ["full", "tpe-k1", "tpe-k3", "optuna"]
    assert result["target"] == max(t["score"] for t in rows["full"]["trace"])
    assert rows["full"]["trials_to_target"] <= 3 and rows["full"]["finished_trials"] == 3
    assert all(rows[r]["finished_trials"] == 3 for r in ("tpe-k1", "tpe-k3"))
    # TPE's 10 random start-up trials: K = 1 and K = 3 ask the same 3 points
    assert [t["hyperparameters"] for t in rows["tpe-k1"]["trace"]] == \
        [t["hyperparameters"] for t in rows["tpe-k3"]["trace"]]
    json.dumps(result, allow_nan=False)


def test_a_race_halves_the_random_and_tpe_rows_each_tpe_round_a_bracket():
    halved = case(6, rows=("full", "random", "tpe"), batches=(3,),
                  extra={"halving": 3, "min_steps": 5})
    rows = run_race(halved, DS)["rows"]
    # rungs at 5 and 15 of 20 steps: random search keeps 2 of its 6, then 1; each of TPE's
    # two rounds of 3 keeps 1, so one trial per round trains to the end
    assert [rows[r]["finished_trials"] for r in ("full", "random", "tpe-k3")] == [6, 1, 2]


@pytest.mark.parametrize("argv,match", [
    (["--optimizers", "sgd,adam"], "Invalid --optimizers sgd,adam for the search race"),
    (["--batches", "2,0"], "Invalid --batches '2,0'"),
    (["--race-rows", "tpe,optuna"], "Invalid race rows: tpe, optuna"),
    (["--sweep-setting", "halving"], "Invalid --sweep-setting 'halving'"),
    (["--sweep-setting", "trials=x"], "Invalid trials"),
])
def test_bad_race_input_exits_2_with_one_line(npz, capsys, argv, match):
    assert exit_code(["sweep-bench", "--race", "2", "--dataset", f"npz:{npz}", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
