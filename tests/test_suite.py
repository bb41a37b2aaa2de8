"""The workload suite: performance profiles against hand-worked examples, the size claims on
made-up fractions, a suite that goes on past a failing workload, the CLI end to end, and the
transformer on its sequence task."""

from __future__ import annotations

import base64
import csv
import gzip
import json
import math
import shutil
import textwrap
from html.parser import HTMLParser

import numpy as np
import pytest
from summaries import runs as summary_runs

from optimlab.analysis import profiles
from optimlab.analysis.size_claims import halves, large_claim, small_claim
from optimlab.cli import main
from optimlab.lab.suite import SuiteConfig, summary
from optimlab.train.record import CurvePoint, _crossing

# Two workloads, three optimizers; c misses w1's target. By hand: w1's best is 100, w2's 150.
STEPS = {"w1": {"a": 100.0, "b": 200.0, "c": None},
         "w2": {"a": 300.0, "b": 150.0, "c": 600.0}}
RATIOS = {"w1": {"a": 1.0, "b": 2.0, "c": None}, "w2": {"a": 2.0, "b": 1.0, "c": 4.0}}


@pytest.mark.parametrize("points, target, higher, expected", [
    ([(0, 0.1), (100, 0.3), (200, 0.7)], 0.5, True, 150.0),  # halfway from 0.3 to 0.7
    ([(0, 0.1), (100, 0.3), (200, 0.7)], 0.3, True, 100.0),  # reached exactly at an eval
    ([(0, 0.1), (50, 0.2), (100, 0.4)], 0.25, True, 62.5),
    ([(0, 0.1), (100, 0.3)], 0.5, True, None),  # never reached
    ([(0, 2.0), (10, 1.0), (20, 0.5)], 0.75, False, 15.0),  # a loss: lower is better
    ([(0, 0.1), (100, math.nan), (200, 0.9)], 0.5, True, 200.0),  # after a NaN: that eval
    ([(0, 0.1), (100, math.nan)], 0.05, False, None),  # a NaN never reaches
])
def test_steps_to_target_interpolates_between_evaluations(points, target, higher, expected):
    """The suite reads each run's steps to target from its summary record."""
    curves = [CurvePoint(step, 0.01 * step, "val", "acc", value) for step, value in points]
    assert _crossing(curves, target, lower_is_better=not higher)[0] == expected


@pytest.mark.parametrize("seeds, expected", [
    ([100.0, 300.0, 200.0], 200.0),
    ([100.0, 200.0], 150.0),
    ([100.0, None, 300.0], 300.0),  # the missed seed is the slowest, not the middle
    ([100.0, None], None),  # the median falls on a seed that did not reach
    ([None, None, 50.0], None),
    ([], None),
])
def test_median_counts_a_missed_target_as_slowest_and_never_as_a_number(seeds, expected):
    assert profiles.median_steps(seeds) == expected


def test_ratios_profile_and_score_of_a_hand_worked_suite():
    assert profiles.ratios(STEPS) == RATIOS
    assert profiles.breakpoints(RATIOS) == [1.0, 2.0, 4.0]
    assert profiles.profile(RATIOS, [1.0, 1.5, 2.0, 4.0, 1e9]) == {
        "a": [0.5, 0.5, 1.0, 1.0, 1.0], "b": [0.5, 0.5, 1.0, 1.0, 1.0],
        "c": [0.0, 0.0, 0.0, 0.5, 0.5]}  # c's missed target never counts, at any tau
    # a: (4 - 1) / 3 and (4 - 2) / 3 over two workloads; c's ratio 4 adds nothing
    assert profiles.score(RATIOS) == pytest.approx({"a": 5 / 6, "b": 5 / 6, "c": 0.0})


def test_score_is_the_mean_height_of_the_profile_over_one_to_tau_max():
    ratios = {"w1": {"a": 1.0, "b": 1.3}, "w2": {"a": 2.7, "b": 1.0},
              "w3": {"a": None, "b": 3.9}, "w4": {"a": 1.0, "b": 7.0}}
    taus = np.linspace(1.0, 4.0, 300_001)  # a Riemann sum, independent of the closed form
    heights = profiles.profile(ratios, taus)
    for name, s in profiles.score(ratios).items():
        assert s == pytest.approx(np.mean(heights[name]), abs=1e-4)


def test_a_target_met_before_training_has_no_ratio():
    with pytest.raises(ValueError, match="'w1'.*before training"):
        profiles.ratios({"w1": {"a": 0.0, "b": 10.0}})


def test_a_workload_nobody_solves_counts_against_everyone():
    ratios = profiles.ratios({"w1": {"a": None, "b": None}, "w2": {"a": 10.0, "b": 20.0}})
    assert ratios["w1"] == {"a": None, "b": None}
    assert profiles.profile(ratios, [1.0, 2.0]) == {"a": [0.5, 0.5], "b": [0.0, 0.5]}


def fractions(workloads, **by_optimizer):
    """The same per-seed fractions of the budget for every workload."""
    return {w: dict(by_optimizer) for w in workloads}


ORDERED = ["w1", "w2", "w3", "w4", "w5"]  # smallest first


def test_halves_leave_out_the_middle_of_an_odd_suite():
    assert halves(ORDERED) == (["w1", "w2"], ["w4", "w5"])
    assert halves(["w1", "w2"]) == (["w1"], ["w2"])


@pytest.mark.parametrize("adam, sgd, expected", [
    ([0.1, 0.2, 0.3], [0.5, 0.6, None], "holds"),  # 6 pairs, all for Adam: p = 2/64
    ([0.5, 0.6, 0.9], [0.1, 0.2, 0.3], "contradicted"),
    ([0.1, 0.6, 0.3], [0.5, 0.2, 0.35], "not supported"),
])
def test_adam_faster_on_large_problems_is_decided_on_the_larger_half(adam, sgd, expected):
    claim = large_claim(fractions(ORDERED, adam=adam, sgd=sgd), ORDERED, 0.05)
    assert claim["verdict"] == expected
    assert claim["workloads"] == ["w4", "w5"] and claim["tests"][0]["n"] == 6


def test_two_seeds_on_two_workloads_are_too_few_for_a_verdict():
    claim = large_claim(fractions(ORDERED, adam=[0.1, 0.1], sgd=[0.9, 0.9]), ORDERED, 0.05)
    assert claim["verdict"] == "too few seeds"  # 4 pairs: the smallest p is 2/16
    assert claim["tests"][0]["seeds_needed"] == 6


def test_a_claim_without_its_optimizers_is_not_measured():
    claim = large_claim(fractions(ORDERED, adam=[0.1]), ORDERED, 0.05)
    assert claim["verdict"] == "not measured" and "sgd" in claim["why"]


def test_momentum_suffices_on_small_problems_when_it_reaches_and_is_not_slower():
    fast = [0.1, 0.2, 0.3]
    holds = small_claim(fractions(ORDERED, adam=fast, momentum=fast, rmsprop=[None] * 3),
                        ORDERED, 0.05)
    assert holds["verdict"] == "holds" and "momentum" in holds["why"]
    contradicted = small_claim(fractions(ORDERED, adam=[0.1, 0.1, 0.1], momentum=[None] * 3,
                                         rmsprop=[0.8, 0.9, 0.7]), ORDERED, 0.05)
    assert contradicted["verdict"] == "contradicted"



@pytest.mark.parametrize("adam, momentum, rmsprop, expected", [
    ([0.1, 0.1, 0.1], [0.1, 0.2, None], [None, 0.1, 0.2], "not supported"),  # misses, no test
    ([None] * 3, [None] * 3, [None] * 3, "undecided"),  # nobody reached: budget too small
    ([0.1, 0.2], [0.1, 0.2], [0.1, 0.2], "too few seeds"),  # 4 pairs
])
def test_small_claim_is_undecided_without_a_test_that_can_tell(adam, momentum, rmsprop,
                                                               expected):
    claim = small_claim(fractions(ORDERED, adam=adam, momentum=momentum, rmsprop=rmsprop),
                        ORDERED, 0.05)
    assert claim["verdict"] == expected


def test_large_claim_is_undecided_when_neither_reaches():
    claim = large_claim(fractions(ORDERED, adam=[None] * 3, sgd=[None] * 3), ORDERED, 0.05)
    assert claim["verdict"] == "undecided"


def unfair(a, b, *reasons):
    """A workload's audit that left the pair (a, b) undecided."""
    return {"undecided": [{"a": a, "b": b, "reasons": list(reasons)}]}


def test_a_workloads_audit_leaves_the_large_claim_undecided_with_its_reasons():
    """The same runs that make the claim hold (6 pairs, p = 2/64) decide nothing when one
    workload of the larger half tuned the pair unfairly; a smaller-half audit is no matter."""
    runs = fractions(ORDERED, adam=[0.1, 0.2, 0.3], sgd=[0.5, 0.6, None])
    assert large_claim(runs, ORDERED, 0.05, {"w1": unfair("adam", "sgd", "x")})["verdict"] \
        == "holds"
    claim = large_claim(runs, ORDERED, 0.05, {
        "w4": unfair("sgd", "adam", "η of adam on its grid's upper edge"),
        "w5": unfair("adam", "sgd", "unequal tuning budgets (adam 8 trials; sgd 2 trials)"),
        "w3": unfair("adam", "sgd", "the middle workload is in neither half")})
    assert claim["verdict"] == "undecided"
    (row,) = claim["tests"]
    assert (row["verdict"], row["test_verdict"]) == ("undecided", "a better")
    assert row["reasons"] == ["w4: η of adam on its grid's upper edge",
                              "w5: unequal tuning budgets (adam 8 trials; sgd 2 trials)"]
    assert "w4: η of adam" in claim["why"] and "w3" not in claim["why"]


def test_a_workloads_audit_leaves_the_small_claim_undecided_but_not_a_test_that_cannot_tell():
    fast = [0.1, 0.2, 0.3]
    runs = fractions(ORDERED, adam=fast, momentum=fast, rmsprop=[None] * 3)
    claim = small_claim(runs, ORDERED, 0.05, {"w2": unfair("momentum", "adam", "unequal steps")})
    assert claim["verdict"] == "undecided" and "momentum vs adam: w2: unequal steps" in claim[
        "why"]
    few = fractions(ORDERED, adam=[0.1, 0.2], momentum=[0.1, 0.2], rmsprop=[0.1, 0.2])
    assert small_claim(few, ORDERED, 0.05, {"w1": unfair("momentum", "adam", "edge")})[
        "verdict"] == "too few seeds"


def test_the_suites_claims_read_each_workloads_audit():
    """suite.json's claims come from the finished workloads' steps and their audits."""
    def entry(name, size, audit):
        steps = {"adam": [10, 20, 30], "sgd": [50, 60, None]}
        return {"name": name, "status": "finished", "parameters": size, "steps": 100,
                "audit": audit, "optimizers": {o: {"steps_to_target": s,
                                                   "median_steps_to_target": s[1]}
                                               for o, s in steps.items()}}
    entries = [entry(f"w{i}", i, {}) for i in (1, 2, 3)]
    fair = summary(SuiteConfig(), [*entries, entry("w4", 4, {})])
    assert fair["claims"][0]["verdict"] == "holds"
    edge = summary(SuiteConfig(), [*entries, entry("w4", 4, unfair("adam", "sgd", "edge"))])
    assert edge["claims"][0]["verdict"] == "undecided"
    assert edge["claims"][0]["tests"][0]["reasons"] == ["w4: edge"]


USER_WORKLOADS = '''
    import torch

    def blobs():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(400, 2, generator=g)
        y = (x[:, 0] > 0).long()
        x = x + 1.5 * (2 * y[:, None] - 1)
        return {"name": "blobs", "model": "logreg", "data": ((x[:300], y[:300]),
                (x[300:], y[300:])), "target_acc": 0.9, "steps": 30, "batch_size": 20,
                "eval_every": 5, "lr": {"sgd": 0.5, "rmsprop": 1.0}}

    def broken():
        raise RuntimeError("the data server is down")
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_workloads.py").write_text(textwrap.dedent(USER_WORKLOADS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_cli_runs_a_suite_past_a_failing_workload(user_module, capsys):
    out = user_module / "out"
    code = main(["suite", "--workloads", "my_workloads:broken,my_workloads:blobs",
                 "--optimizers", "sgd,adam", "--seeds", "2", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "suite.json").read_text())
    done, failed = summary["workloads"]
    assert failed == {"name": "my_workloads:broken", "status": "failed",
                      "error": "RuntimeError: the data server is down"}
    assert done["name"] == "blobs" and done["status"] == "finished"
    assert done["parameters"] == 2 * 2 + 2 and done["steps"] == 30
    assert done["optimizers"]["sgd"]["hyperparameters"]["lr"] == 0.5  # the workload's η
    for name in ("sgd", "adam"):
        r = done["optimizers"][name]
        assert len(r["steps_to_target"]) == 2 and len(r["final_test_acc"]) == 2
        reached = [s for s in r["steps_to_target"] if s is not None]
        assert all(0 < s <= 30 for s in reached)
    assert {c["measure"] for c in done["comparisons"]} >= {"time_to_target_step"}
    assert set(summary["profiles"]["score"]) == {"sgd", "adam"}
    assert [c["verdict"] for c in summary["claims"]] == ["not measured"] * 2
    assert (out / "profiles.png").stat().st_size > 0
    assert Page((out / "report.html").read_text()).table("workload")[1][0] == "blobs"
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    assert "failed: RuntimeError: the data server is down" in printed and "blobs" in printed
    assert "blobs: too few seeds for a verdict (needs 7)" in printed
    assert "blobs: ranking over training: " in printed


@pytest.mark.parametrize("argv, needle", [
    (["--workloads", "nope"], "--workloads: nope; allowed:"),
    (["--seeds", "0"], "--seeds: '0'; allowed: an integer >= 1"),
    (["--alpha", "0.7"], "--alpha: '0.7'; allowed: a number in (0, 0.5)"),
    (["--steps", "-3"], "--steps"),
    (["--optimizers", "bogus"], "--optimizers"),
])
def test_bad_suite_flags_exit_2_with_one_line(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["suite", *argv, "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_transformer_maps_token_sequences_to_logits_and_every_weight_gets_a_gradient():
    import torch

    from optimlab import models
    from optimlab.data.lookup import LENGTH, load_lookup

    raw = load_lookup()
    x = torch.from_numpy(raw.x_train[:8]).float()  # the lab hands tokens over as floats
    torch.manual_seed(0)
    model = models.build("transformer", (LENGTH + 1,), 10)
    out = model(x)
    assert out.shape == (8, 10)
    torch.nn.functional.cross_entropy(out, torch.from_numpy(raw.y_train[:8])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ValueError, match="allowed: \\(L,\\)"):
        models.build("transformer", (1, 28, 28), 10)


def test_transformer_parameter_count_in_closed_form_and_vmap_over_stacked_copies():
    import torch
    from torch.func import functional_call, stack_module_state, vmap

    from optimlab import models

    torch.manual_seed(0)
    copies = [models.build("transformer", (9,), 10).double() for _ in range(3)]
    d, vocab, length, classes = 32, 32, 9, 10
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert sum(p.numel() for p in copies[0].parameters()) == (
        vocab * d + length * d + 2 * block + 2 * d + d * classes + classes)
    assert not list(copies[0].buffers()), "buffers would break vmap over stacked copies"
    params, buffers = stack_module_state(copies)
    x = torch.randint(0, 18, (4, 9)).double()

    def one(p, b, xb):
        return functional_call(copies[0], (p, b), (xb,))

    out = vmap(one, in_dims=(0, 0, None))(params, buffers, x)
    torch.testing.assert_close(out, torch.stack([m(x) for m in copies]), rtol=0, atol=1e-12)


def test_lookup_labels_are_the_digit_at_the_queried_position():
    from optimlab.data.lookup import LENGTH, QUERY0, sequences

    x, y = sequences(500, np.random.default_rng(1))
    assert x.shape == (500, LENGTH + 1) and x[:, :-1].max() <= 9
    positions = x[:, -1] - QUERY0
    assert ((0 <= positions) & (positions < LENGTH)).all()
    assert (y == x[np.arange(500), positions]).all()


@pytest.mark.slow
def test_compare_trains_the_transformer_on_lookup_far_above_chance(tmp_path):
    import optimlab

    result = optimlab.compare("transformer", "lookup", ["adam"], steps=300, seeds=1,
                              eval_every=100, target_acc=None, out=tmp_path / "o",
                              report=False)
    (row,) = result.rows
    assert row["final_test_acc"] > 0.5  # chance: 0.1


def test_python_api_takes_workload_objects_and_draws_the_profiles(tmp_path):
    import torch

    import optimlab
    from optimlab.lab.suite import Workload

    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 3, generator=g)
    y = (x.sum(1) > 0).long()
    w = Workload("sum-sign", "logreg", ((x[:150], y[:150]), (x[150:], y[150:])),
                 target_acc=0.8, steps=40, batch_size=25, eval_every=10)
    summary = optimlab.suite([w], ["sgd", "adam"], seeds=1, out=tmp_path / "o")
    (done,) = summary["workloads"]
    assert done["name"] == "sum-sign" and done["parameters"] == 3 * 2 + 2
    assert json.loads((tmp_path / "o" / "suite.json").read_text())["workloads"][0]["name"] \
        == "sum-sign"
    assert (tmp_path / "o" / "profiles.png").exists()


def test_quick_runs_a_tenth_of_each_budget_on_two_seeds_and_steps_overrides_it():
    from optimlab.lab.suite import BUILTIN, SuiteConfig

    cnn = BUILTIN["mnist1d-cnn"]
    assert SuiteConfig(quick=True).budget(cnn) == (round(cnn.steps / 10), 2)
    assert SuiteConfig(quick=True, seeds=1).budget(cnn) == (round(cnn.steps / 10), 1)
    assert SuiteConfig(steps=7, seeds=4).budget(cnn) == (7, 4)
    assert SuiteConfig().budget(cnn) == (cnn.steps, 7)


@pytest.mark.parametrize("kwargs, needle", [
    ({"seeds": 0}, "Invalid seeds: 0"),
    ({"steps": 2.5}, "Invalid steps: 2.5"),
    ({"alpha": 0.5}, "Invalid alpha: 0.5"),
    ({"workloads": ()}, "Invalid workloads: none"),
    ({"workloads": ("nope",)}, "Invalid workload 'nope'"),
])
def test_bad_suite_settings_from_python_raise_one_line_naming_them(kwargs, needle):
    from optimlab.lab.suite import SuiteConfig

    with pytest.raises(ValueError, match=needle.replace("(", "\\(")):
        SuiteConfig(**kwargs)


def test_a_full_disk_stops_the_suite_instead_of_failing_every_workload(tmp_path, monkeypatch):
    from optimlab.lab import suite
    from optimlab.lab.experiment import DiskFull

    calls = []

    def full(w, cfg, out, *hooks):
        calls.append(w.name)
        raise DiskFull("the disk is full")

    monkeypatch.setattr(suite, "run_workload", full)
    cfg = suite.SuiteConfig(workloads=("mnist1d-logreg", "digits-logreg"))
    with pytest.raises(DiskFull):
        suite.Suite(cfg, tmp_path / "o").run()
    assert calls == ["mnist1d-logreg"]


def test_terminal_names_the_pairs_decided_on_steps_to_target():
    from optimlab.commands.suite import _verdicts

    def row(a, b, verdict, measure="time_to_target_step"):
        return {"a": a, "b": b, "measure": measure, "verdict": verdict, "seeds_needed": 7}

    w = {"name": "w", "comparisons": [row("sgd", "adam", "b better"),
                                      row("adam", "rmsprop", "no difference detected"),
                                      row("sgd", "rmsprop", "a better", "final_test_acc")]}
    assert _verdicts(w) == "w: fewer steps to target (paired, Holm): adam < sgd"
    w["comparisons"][0]["verdict"] = "no difference detected"
    assert _verdicts(w) == "w: no difference in steps to target detected"


# Rankings over training, by hand. Three seeds each; c's seed 1 diverged at step 20 (NaN).
SERIES = {"a": [{0: 0.1, 10: 0.5, 20: 0.9}, {0: 0.1, 10: 0.6, 20: 0.8}, {0: 0.1, 10: 0.4, 20: 0.7}],
          "b": [{0: 0.1, 10: 0.7, 20: 0.6}, {0: 0.1, 10: 0.8, 20: 0.5}, {0: 0.1, 10: 0.9, 20: 0.7}],
          "c": [{0: 0.1, 10: 0.5, 20: 0.8}, {0: 0.1, 10: 0.5, 20: math.nan},
                {0: 0.1, 10: 0.3, 20: 0.9}]}


def test_ranking_over_training_orders_the_seeds_medians_and_ties_share_a_rank():
    from optimlab.analysis.rankings import ranking_over_training

    checkpoints = ranking_over_training(SERIES)
    assert [c["step"] for c in checkpoints] == [0, 10, 20]
    # step 0: the same initial weights, all tied; step 10: medians a .5, b .8, c .5;
    # step 20: a .8, b .6, c .8 (the NaN seed is the worst of c's three: the median is .8)
    assert [c["rank"] for c in checkpoints] == [{"a": 1, "b": 1, "c": 1},
                                                {"a": 2, "b": 1, "c": 2},
                                                {"a": 1, "b": 3, "c": 1}]
    assert [c["order"] for c in checkpoints] == [["a", "b", "c"], ["b", "a", "c"],
                                                 ["a", "c", "b"]]
    assert checkpoints[2]["value"] == {"a": 0.8, "b": 0.6, "c": 0.8}


def test_a_designed_flip_is_found_and_a_tie_at_the_end_is_no_flip():
    from optimlab.analysis.rankings import flips, ranking_over_training

    # b led a and c at step 10 and is last at the end; a and c end tied: no flip between them
    assert flips(ranking_over_training(SERIES)) == [
        {"ahead": "a", "behind": "b", "steps": [10]}, {"ahead": "c", "behind": "b", "steps": [10]}]
    held = {"sgd": [{5: 0.2, 10: 0.3, 15: 0.4}], "adam": [{5: 0.5, 10: 0.6, 15: 0.7}]}
    assert flips(ranking_over_training(held)) == []
    # adam leads at 5 and 10, sgd overtakes it at 15 and 20
    late = {"sgd": [{5: 0.2, 10: 0.3, 15: 0.8, 20: 0.9}],
            "adam": [{5: 0.5, 10: 0.6, 15: 0.7, 20: 0.7}]}
    assert flips(ranking_over_training(late)) == [
        {"ahead": "sgd", "behind": "adam", "steps": [5, 10]}]
    assert flips([]) == []


@pytest.mark.parametrize("seeds, expected", [
    ([0.3, 0.6], 0.45),  # (0.3 + 0.6) / 2 is 0.44999999999999996: still 0.45's tie below
    ([0.9, None, 0.2], 0.2),  # a seed with no value is the worst, not the middle
    ([0.9, math.nan], None),  # the median falls on the seed without a finite value
    ([0.9, 0.8, 0.7, None], 0.75),
])
def test_median_at_a_step_counts_a_seed_without_a_value_as_the_worst(seeds, expected):
    from optimlab.analysis.rankings import median_at, rank

    seeds = [{} if v is None else {10: v} for v in seeds]  # None: no evaluation at step 10
    median = median_at(seeds, 10)
    assert median == pytest.approx(expected) if expected is not None else median is None
    if expected is not None:  # a float's last bits never break a tie
        assert rank({"x": median, "y": expected, "z": None}) == {"x": 1, "y": 1, "z": 3}


def test_validation_series_groups_runs_by_entry_in_seed_order():
    from optimlab.analysis.rankings import validation_series
    from optimlab.analysis.records import curves_from_rows

    records = [{"run": f"{o}-seed{s}", "label": o, "optimizer": o, "seed": s}
               for s in (1, 0) for o in ("sgd", "adam")]
    rows = {f"{o}-seed{s}": {("val", "acc"): [(0, 0.0, 0.1), (5, 0.2, 0.1 * s + (o == "adam"))],
                             ("val", "loss"): [(0, 0.0, 9.0)]}
            for s in (0, 1) for o in ("sgd", "adam")}
    del rows["adam-seed1"][("val", "acc")]  # a run without the curve has no steps
    series = validation_series(records, curves_from_rows(rows))
    assert series == {"sgd": [{0: 0.1, 5: 0.0}, {0: 0.1, 5: 0.1}],
                      "adam": [{0: 0.1, 5: 1.0}, {}]}
    assert all(isinstance(s, int) for seeds in series.values() for seed in seeds for s in seed)


def sign_workload(name, features, steps, seed):
    """A linearly separable task small enough for a suite of seconds."""
    import torch

    from optimlab.lab.suite import Workload

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(240, features, generator=g)
    y = (x.sum(1) > 0).long()
    return Workload(name, "logreg", ((x[:180], y[:180]), (x[180:], y[180:])), target_acc=0.8,
                    steps=steps, batch_size=20, eval_every=5)


SUITE_OPTIMIZERS = ("sgd", "momentum", "adam")


@pytest.fixture(scope="module")
def suite_folder(tmp_path_factory):
    """A finished suite of two workloads and one that fails, with its report."""
    import optimlab
    from optimlab.lab.suite import Workload

    broken = Workload("broken", "logreg", ("one part",), target_acc=0.5, steps=10)
    out = tmp_path_factory.mktemp("suite") / "o"
    optimlab.suite([sign_workload("small", 3, 30, 1), sign_workload("wide", 20, 40, 2), broken],
                   SUITE_OPTIMIZERS, seeds=2, out=out)
    return out


def test_suite_json_ranks_each_workload_by_its_curves_at_every_evaluation(suite_folder):
    summary = json.loads((suite_folder / "suite.json").read_text())
    for w in summary["workloads"][:2]:
        ranking = w["ranking_over_training"]
        # the reference: curves.csv read as text, the median over the two seeds by hand
        acc = {}
        with (suite_folder / w["folder"] / "curves.csv").open() as f:
            for row in csv.DictReader(f):
                if (row["split"], row["metric"]) == ("val", "acc"):
                    label = row["run"].rsplit("-seed", 1)[0]
                    acc.setdefault(int(row["step"]), {}).setdefault(label, []).append(
                        float(row["value"]))
        assert [c["step"] for c in ranking["checkpoints"]] == sorted(acc) == list(
            range(0, w["steps"] + 1, 5))
        for c in ranking["checkpoints"]:
            median = {o: sum(v) / 2 for o, v in acc[c["step"]].items()}
            assert c["value"] == pytest.approx(median)
            for o in SUITE_OPTIMIZERS:
                assert c["rank"][o] == 1 + sum(m > median[o] + 1e-9 for m in median.values())
        assert all(f["ahead"] in SUITE_OPTIMIZERS and f["steps"] for f in ranking["flips"])
        assert ranking["checkpoints"][0]["rank"] == dict.fromkeys(SUITE_OPTIMIZERS, 1)


class Page(HTMLParser):
    """report.html as a reader sees it: headings, tables (rows of cell texts), figures."""

    def __init__(self, text):
        super().__init__()
        self.headings, self.tables, self.figures = [], [], {}
        self._text, self._cell = None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h2", "h3"):
            self._text = []
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "div" and "data-figure" in attrs:
            self.figures[attrs["id"]] = json.loads(gzip.decompress(
                base64.b64decode(attrs["data-figure"])))

    def handle_endtag(self, tag):
        if tag in ("h2", "h3"):
            self.headings.append((tag, "".join(self._text)))
            self._text = None
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        for part in (self._text, self._cell):
            if part is not None:
                part.append(data)

    def table(self, first_header):
        return next(t for t in self.tables if t[0][0] == first_header)


def test_report_page_holds_profiles_steps_rankings_verdicts_and_failures(suite_folder):
    summary = json.loads((suite_folder / "suite.json").read_text())
    page = Page((suite_folder / "report.html").read_text())
    assert [h for tag, h in page.headings if tag == "h2"] == [
        "Performance profiles", "Median steps to the validation target (of the budget; a seed "
        "that missed counts as the slowest)", "Ranking over training", "Tuning",
        "Paired comparisons per workload", "The lecture's claims about problem size",
        "Failed workloads", "Settings"]
    profile = page.figures["profiles"]["data"]
    assert [t["name"].split()[0] for t in profile] == list(SUITE_OPTIMIZERS)
    assert [t["y"][:-1] for t in profile] == list(summary["profiles"]["fraction"].values())
    steps = page.table("workload")
    assert steps[0][4:] == list(SUITE_OPTIMIZERS)
    for row, name in zip(steps[1:], ("small", "wide")):
        # independent of suite.json: the workload's own summary.json, median of two seeds
        records = summary_runs(suite_folder / name)
        for o, cell in zip(SUITE_OPTIMIZERS, row[4:]):
            seeds = [r["time_to_target_step"] for r in records if r["label"] == o]
            reached = [s for s in seeds if s is not None]
            # of two seeds, a missed one is the slower: the median is then not reached
            budget = 30 if name == "small" else 40
            median = f"{sum(reached) / 2:.0f} of" if len(reached) == 2 else "not reached in"
            assert cell == f"{median} {budget} ({len(reached)}/2 seeds reached)"
        w = next(w for w in summary["workloads"] if w["name"] == name)
        chart = page.figures[f"ranking-{name}"]["data"]
        assert {t["name"]: t["y"] for t in chart} == {
            o: [c["rank"][o] for c in w["ranking_over_training"]["checkpoints"]]
            for o in SUITE_OPTIMIZERS}
    assert [h for tag, h in page.headings if tag == "h3"] == ["small", "wide"] * 2
    changes = [t for t in page.tables if t[0][:2] == ["step", "ranking (best first)"]]
    assert [row[1] for row in changes[0][1:2]] == ["sgd = momentum = adam"]  # step 0: tied
    verdicts = [t for t in page.tables if t[0][0] == "a vs b"]
    assert [len(t) - 1 for t in verdicts] == [3 * 3, 3 * 3]  # 3 pairs x 3 measures
    claims = page.table("the lecture says")
    assert [row[1] for row in claims[1:]] == [c["verdict"] for c in summary["claims"]]
    assert "α = 0.05" in claims[1][2] and "2 (workload, seed) pairs" in claims[1][2]
    failed = [t for t in page.tables if t[0] == ["workload", "error"]]
    assert failed[0][1][1].startswith("TypeError: Invalid data of workload 'broken'")


def test_report_rerenders_a_suite_folder_with_torch_not_importable(suite_folder):
    from test_records import without_torch

    before = (suite_folder / "report.html").read_text()
    for name in ("report.html", "profiles.png"):
        (suite_folder / name).unlink()
    out = without_torch(f"""
        from optimlab.cli import main
        print("code", main(["report", {str(suite_folder)!r}]))
        """)
    assert out.splitlines()[-1] == "code 0"
    assert (suite_folder / "report.html").read_text() == before
    assert (suite_folder / "profiles.png").stat().st_size > 0


def test_suite_report_without_plotly_shows_the_png_and_the_tables(suite_folder, tmp_path,
                                                                   monkeypatch):
    from optimlab.report import interactive
    from optimlab.report.suite import render

    monkeypatch.setattr(interactive, "available", lambda: False)
    folder = tmp_path / "copy"
    shutil.copytree(suite_folder, folder)
    text = render(folder).read_text()
    page = Page(text)
    assert page.figures == {} and '<img alt="performance profiles"' in text
    assert len([t for t in page.tables if t[0][:2] == ["step", "ranking (best first)"]]) == 2
    assert interactive.NO_PLOTLY in text


def test_suite_report_of_a_suite_json_without_rankings_says_so(suite_folder, tmp_path):
    from optimlab.report.suite import render

    folder = tmp_path / "older"
    shutil.copytree(suite_folder, folder)
    summary = json.loads((folder / "suite.json").read_text())
    for w in summary["workloads"]:
        w.pop("ranking_over_training", None)
    (folder / "suite.json").write_text(json.dumps(summary))
    page = Page(render(folder).read_text())
    assert not [f for f in page.figures if f.startswith("ranking-")]
    assert "Ranking over training" in [h for _, h in page.headings]
    assert "not recorded" in (folder / "report.html").read_text()


@pytest.mark.parametrize("content, needle", [
    ("{}", "expected an object with settings, workloads, profiles, claims"),
    ('{"settings": {', "the file ends mid-document"),
])
def test_report_refuses_a_damaged_suite_json_in_one_line(content, needle, tmp_path, capsys):
    (tmp_path / "suite.json").write_text(content)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(tmp_path / "suite.json") in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "report.html").exists()
