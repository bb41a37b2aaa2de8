"""Random search: the declared scales, reproducibility, the anytime prefix, bad input, and a
sweep end to end (CLI and Python) that resumes, grows and refuses other settings."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import exit_code
from scipy import stats
from summaries import runs as summary_runs
from test_sweep import DS, one_thread  # noqa: F401 - the fixture: one torch thread

import optimlab
from optimlab.lab.grid import hyperparameter_sets, settings
from optimlab.lab.store import Store
from optimlab.lab.sweep import Sweep, _edges
from optimlab.optim import SPECS


def sample(trials: int, seed: int = 0, **flags) -> list[dict]:
    """Adam's random trials for the ranges in `flags` (key: "LO:HI")."""
    cfg = settings({}, {"search": "random", "trials": trials, "search_seed": seed,
                        "optimizers": "adam", **flags})
    return hyperparameter_sets(cfg, "adam")


RANGES = {"lr": "1e-4:1e-1", "beta1": "0.5:0.99", "beta2": "0.9:0.9999", "eps": "1e-10:1e-6"}


def test_samples_are_log_uniform_in_eta_eps_and_in_one_minus_beta():
    points = sample(2000, **RANGES)
    lr = np.array([p["lr"] for p in points])
    eps = np.array([p["eps"] for p in points])
    b1 = np.array([p["betas"][0] for p in points])
    b2 = np.array([p["betas"][1] for p in points])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1 and eps.min() >= 1e-10 and eps.max() <= 1e-6
    assert b1.min() >= 0.5 and b1.max() <= 0.99 and b2.min() >= 0.9 and b2.max() < 1
    # uniform in the declared scale: log10 x for η and ε, log10(1 - β) for the βs
    for x, lo, hi in ((np.log10(lr), -4, -1), (np.log10(eps), -10, -6),
                      (np.log10(1 - b1), math.log10(0.01), math.log10(0.5)),
                      (np.log10(1 - b2), -4, -1)):
        assert stats.kstest(x, "uniform", args=(lo, hi - lo)).pvalue > 0.01
    # and not uniform in x itself: the test tells the scales apart
    assert stats.kstest(lr, "uniform", args=(1e-4, 1e-1 - 1e-4)).pvalue < 1e-6
    assert stats.kstest(b1, "uniform", args=(0.5, 0.49)).pvalue < 1e-6


def test_the_specifications_declare_the_scales_and_valid_default_spaces():
    for spec in SPECS.values():
        for key in ("lr", "eps", "weight_decay"):
            if key in spec.hyperparameters:
                assert spec.number(key).scale == "log", (spec.name, key)
        for key in ("beta1", "beta2", "alpha") + (("momentum",) if spec.name == "momentum"
                                                  else ()):
            if key in spec.flat_keys(tuple(spec.hyperparameters)):
                assert spec.number(key).scale == "log1m", (spec.name, key)
        assert "lr" in spec.search
    with pytest.raises(ValueError, match="beta1"):
        dataclasses.replace(SPECS["adam"], search={"beta1": (0.5, 1.0)})


def test_with_no_range_given_every_optimizer_samples_its_declared_space():
    cfg = settings({}, {"search": "random", "trials": 50})
    for name in cfg.labels:
        points = hyperparameter_sets(cfg, name)
        flat = [SPECS[name].flatten(p) for p in points]
        assert set(flat[0]) == set(SPECS[name].search)
        for key, (lo, hi) in SPECS[name].search.items():
            assert all(lo <= p[key] <= hi for p in flat), (name, key)


def test_a_list_is_drawn_from_and_the_seed_reproduces_the_sample():
    points = sample(40, lr="1e-4:1e-1", eps="1e-8,1e-6")
    assert {p["eps"] for p in points} == {1e-8, 1e-6}
    assert points == sample(40, lr="1e-4:1e-1", eps="1e-8,1e-6")
    assert points != sample(40, seed=1, lr="1e-4:1e-1", eps="1e-8,1e-6")


def test_the_first_n_of_2n_trials_are_the_same_n():
    assert sample(16, **RANGES) == sample(32, **RANGES)[:16]
    # an entry's trials do not depend on the other entries either
    both = settings({}, {"search": "random", "trials": 8, "optimizers": "sgd,adam", **RANGES})
    assert hyperparameter_sets(both, "adam") == sample(8, **RANGES)


@pytest.mark.parametrize("argv,match", [
    (["--search", "random", "--trials", "4", "--lr", "1e-1:1e-4"],
     "Invalid lr: '1e-1:1e-4': LO must be below HI"),
    (["--search", "random", "--trials", "4", "--lr", "1e-2:1e-2"], "Invalid lr: '1e-2:1e-2'"),
    (["--search", "random", "--trials", "4", "--beta1", "0.5:1"], "Invalid beta1: 0.5:1 lies "
     "outside"),
    (["--search", "random", "--trials", "4", "--lr=0:1e-1"], "Invalid lr: 0:0.1 lies outside"),
    (["--search", "random", "--trials", "4", "--lr=-1e-3:1e-1"], "Invalid lr: -0.001:0.1"),
    (["--search", "random", "--trials", "4", "--eps", "0:1e-6"], "Invalid eps: 0:1e-06"),
    (["--trials", "4"], "Invalid --trials 4 with --search grid"),
    (["--trials", "4", "--lr", "1e-3:1e-1"], "or LO:HI with --search random"),
    (["--search", "random", "--trials", "4", "--optimizers", "sgd", "--lr", "1e-3,1e-2"],
     "Invalid --trials 4 for sgd: every key it searches is a list (lr)"),
    (["--search", "random"], "Invalid --search random without --trials"),
    (["--search", "random", "--trials", "0"], "argument --trials: '0'; allowed: an integer"),
    (["--search", "random", "--trials", "2", "--search-seed", "x"], "argument --search-seed"),
    (["--lr", "1e-4:1e-1"], "Invalid lr: '1e-4:1e-1': a grid range needs a count"),
    (["--search", "random", "--trials", "2", "--select", "val", "--extend-edges"],
     "Invalid extend_edges with --search random"),
])
def test_bad_input_exits_2_with_one_line_naming_it(tmp_path, capsys, argv, match):
    assert exit_code(["sweep", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert match in err
    assert not (tmp_path / "o").exists()
    if "argument" not in match:  # argparse's own errors come with the usage line
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_range_in_a_per_optimizer_table_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"Invalid \[grid.adam\] lr = '1e-4:1e-1'"):
        settings({"grid": {"adam": {"lr": "1e-4:1e-1"}}},
                 {"search": "random", "trials": 2, "optimizers": "adam"})


def test_a_sampled_value_is_on_an_edge_within_five_percent_of_its_ranges_end():
    """On the range's scale, not among the values sampled: η 1e-3:1e-1 is log-uniform, so
    0.08 (95.2 % of the way) is on the high edge and 0.05 (85 %) is not, though it may be
    the highest sampled; β₁ 0.5:0.99 is log-uniform in 1 - β₁; a list keeps the grid rule."""
    cfg = settings({}, {"search": "random", "trials": 3, "optimizers": "adam",
                        "lr": "1e-3:1e-1", "beta1": "0.5:0.99", "eps": "1e-8,1e-6"})
    grid = {"lr": (0.002, 0.05), "beta1": (0.6, 0.7), "eps": (1e-8, 1e-6)}
    position = math.log(0.08 / 1e-3) / math.log(100)
    assert 0.95 < position < 0.96
    assert _edges(cfg, "adam", grid, {"lr": 0.08, "betas": (0.7, 0.999), "eps": 1e-7}) == {
        "lr": "high"}
    assert _edges(cfg, "adam", grid, {"lr": 0.05, "betas": (0.6, 0.999), "eps": 1e-6}) == {
        "eps": "high"}
    # 1 - β₁ = 0.012 lies 3.8 % of the way from 0.01 on log(1 - β₁): β₁ near 0.99 is an edge
    assert _edges(cfg, "adam", grid, {"lr": 0.01, "betas": (0.988, 0.999), "eps": 1e-7}) == {
        "beta1": "high"}
    assert _edges(cfg, "adam", grid, {"lr": 0.0011, "betas": (0.52, 0.999), "eps": 1e-7}) == {
        "lr": "low", "beta1": "low"}


def cli(npz: Path, out: Path, *more: str) -> list[str]:
    return ["sweep", "--dataset", f"npz:{npz}", "--model", "logreg", "--optimizers",
            "sgd,adam", "--search", "random", "--lr", "1e-3:1e-1", "--beta1", "0.5:0.99",
            "--steps", "20", "--batch-size", "20", "--eval-every", "10", "--out", str(out),
            *more]


def test_cli_random_sweep_trains_grows_anytime_and_refuses_other_settings(npz, tmp_path,
                                                                          capsys):
    # npz: conftest's small 3-class dataset
    out = tmp_path / "o"
    assert exit_code(cli(npz, out, "--trials", "3")) == 0
    first = summary_runs(out)
    assert len(first) == 6 and {r["optimizer"] for r in first} == {"sgd", "adam"}
    for r in first:
        assert 1e-3 <= r["hyperparameters"]["lr"] <= 1e-1
        if r["optimizer"] == "adam":
            assert 0.5 <= r["hyperparameters"]["betas"][0] <= 0.99
    assert (out / "report.html").exists()
    terminal = capsys.readouterr().out.replace("\n", " ")
    assert "--extend-edges" not in terminal  # refused with random search: nothing to extend
    # more trials into the same folder: the 3 done stay (same records, clocks included)
    assert exit_code(cli(npz, out, "--trials", "5")) == 0
    grown = {r["run"]: r for r in summary_runs(out)}
    assert len(grown) == 10 and all(grown[r["run"]] == r for r in first)
    capsys.readouterr()
    for more, named in ((["--trials", "5", "--search-seed", "1"], "search_seed 0 there, 1 now"),
                        (["--trials", "4"], "trials 5 there, 4 now"),
                        (["--trials", "5", "--eps", "1e-9:1e-7"], "ranges")):
        assert exit_code(cli(npz, out, *more)) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1
    assert len(Store(out).runs()) == 10


def test_python_random_sweep_selects_on_val_and_reruns_the_best(tmp_path):
    result = optimlab.sweep("logreg", DS, "adam", grid={"lr": "1e-3:1e-1"},
                            search="random", trials=4, search_seed=2, select="val", seeds=2,
                            steps=20, batch_size=20, eval_every=10, out=tmp_path,
                            report=False)
    runs = Store(tmp_path).runs()
    grid = [r for r in runs if "grid" in r["roles"]]
    assert len(grid) == 4
    best = max(grid, key=lambda r: (r["summary"]["final_val_acc"],
                                    -r["summary"]["final_val_loss"]))
    tuned = [r["config"] for r in runs if "tuned" in r["roles"]]
    assert sorted(c["seed"] for c in tuned) == [0, 1]
    assert all(c["hyperparameters"] == best["config"]["hyperparameters"] for c in tuned)
    assert len(result.rows) == len(runs)


def test_a_store_written_before_random_search_resumes(tmp_path):
    cfg = settings({}, {"dataset": "blobs", "model": "logreg", "optimizers": "sgd",
                        "lr": "0.1", "steps": 10, "batch_size": 20, "eval_every": 10})
    Sweep(cfg, tmp_path, dataset=DS).run()
    store = Store(tmp_path)
    old = {k: v for k, v in store.meta()["settings"].items()
           if k not in ("search", "trials", "search_seed", "ranges")}
    store.set_meta("settings", old)
    assert Sweep(cfg, tmp_path, dataset=DS).execute({"grid": []}) == 0
