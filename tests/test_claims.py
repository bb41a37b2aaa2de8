"""The claims panel's verdicts, on made-up records: every outcome of every claim."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optimlab.report.claims import (
    FAILS,
    HOLDS,
    UNDECIDED,
    Measure,
    adam_faster_than_sgd,
    combine,
    evidence,
    judge,
    learning_rate_is_crucial,
    lecture_claims,
    momentum_faster_than_sgd,
    rmsprop_large_gradients_smaller_steps,
    tuned_sgd_matches_adam,
)


def run(optimizer, seed, *, ttt=None, loss=0.5, acc=0.9, steps=100, target=0.8, lr=0.1,
        diverged=False):
    return {"run": f"{optimizer}-seed{seed}", "optimizer": optimizer, "seed": seed,
            "hyperparameters": {"lr": lr}, "target_acc": target, "steps_planned": steps,
            "final_val_acc": None if diverged else acc, "final_test_acc": None if diverged
            else acc, "time_to_target_step": ttt, "final_train_loss": None if diverged else loss,
            "diverged": diverged}


def pair(a, b, a_vals, b_vals, **kw):
    """Runs of optimizers a and b, one per (time to target, loss) tuple."""
    return ([run(a, i, ttt=t, loss=lo, **kw) for i, (t, lo) in enumerate(a_vals)] +
            [run(b, i, ttt=t, loss=lo, **kw) for i, (t, lo) in enumerate(b_vals)])


SEVEN = range(7)  # the fewest seeds at which two measures, Holm-corrected, reach α = 0.05


@pytest.mark.parametrize("a, b, lower, expected", [
    (tuple(1.0 + s for s in SEVEN), tuple(9.0 + s for s in SEVEN), True, HOLDS),
    (tuple(9.0 + s for s in SEVEN), tuple(1.0 + s for s in SEVEN), True, FAILS),
    (tuple(0.9 for _ in SEVEN), tuple(0.5 for _ in SEVEN), False, HOLDS),  # higher is better
    ((1.0, 5.0, 2.0, 6.0, 3.0, 1.0, 4.0), (2.0, 4.0, 3.0, 5.0, 2.0, 2.0, 3.0), True, UNDECIDED),
    ((1.0, 2.0), (3.0, 4.0), True, UNDECIDED),  # 2 seeds: too few for any verdict
])
def test_one_measure_decides_only_when_the_paired_test_rejects(a, b, lower, expected):
    (m, row), = judge([Measure("m", "A", "B", a, b, lower)])
    from optimlab.report.claims import verdict_of
    assert verdict_of(row) == expected


def test_two_seeds_give_too_few_seeds_not_a_winner():
    """The defect: with 2 seeds, every seed of A beating every seed of B happens by chance
    1 time in 3; the sign-flip test's smallest p with 2 pairs is 2/4 > α."""
    records = pair("adam", "sgd", [(20, 0.2), (25, 0.25)], [(60, 0.5), (70, 0.6)])
    claim = adam_faster_than_sgd(records)
    assert claim.verdict == UNDECIDED
    assert all("too few seeds: 2 paired seeds cannot reach α = 0.05" in e and
               "needs at least 7" in e for e in claim.evidence)


def test_a_large_difference_with_enough_seeds_gives_the_verdict_with_its_numbers():
    records = pair("adam", "sgd", [(20 + s, 0.2) for s in SEVEN],
                   [(60 + 2 * s, 0.5) for s in SEVEN])
    claim = adam_faster_than_sgd(records)
    assert claim.verdict == HOLDS
    # every seed favours adam: p = 2/2^7 exactly, Holm over the two measures doubles it;
    # the difference is mean(20 + s) - mean(60 + 2s) = 23 - 66 = -43 steps
    assert claim.evidence[0].startswith(
        "steps to 80% validation accuracy: adam η=0.1 23 steps vs sgd η=0.1 66 steps; "
        "difference -43 steps [")
    assert "p = 0.0156, Holm 0.0312 (paired sign-flip test, α = 0.05, 7 paired seeds) — " \
           "adam η=0.1 better" in claim.evidence[0]
    assert "train loss after 100 steps" in claim.evidence[1]


def test_equal_contenders_rarely_get_a_verdict():
    """Exchangeable records (a and b drawn alike): the claim, tested on two measures with
    Holm, gets a verdict at most α of the time, within sampling error."""
    rng = np.random.default_rng(0)
    draws, verdicts = 400, 0
    for _ in range(draws):
        x = rng.normal(size=(2, 2, 7))  # (entry, measure, seed)
        records = pair("adam", "sgd", list(zip(50 + 10 * x[0, 0], 1 + x[0, 1])),
                       list(zip(50 + 10 * x[1, 0], 1 + x[1, 1])))
        verdicts += adam_faster_than_sgd(records).verdict != UNDECIDED
    assert verdicts / draws <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)


def test_measures_combine_conservatively():
    assert combine([HOLDS, UNDECIDED]) == HOLDS
    assert combine([FAILS, UNDECIDED]) == FAILS
    assert combine([HOLDS, FAILS]) == UNDECIDED
    assert combine([UNDECIDED, UNDECIDED]) == UNDECIDED


def test_adam_faster_does_not_hold_when_sgd_wins_every_seed():
    records = pair("adam", "sgd", [(60 + s, 0.5) for s in SEVEN], [(20 + s, 0.2) for s in SEVEN])
    assert adam_faster_than_sgd(records).verdict == FAILS


def test_measures_that_disagree_leave_the_claim_undecided():
    records = pair("adam", "sgd", [(20 + s, 0.6) for s in SEVEN], [(60 + s, 0.2) for s in SEVEN])
    assert adam_faster_than_sgd(records).verdict == UNDECIDED


def test_a_run_that_never_reaches_the_target_counts_at_the_step_budget():
    records = ([run("momentum", s, ttt=10.0 + s, loss=0.1) for s in SEVEN] +
               [run("sgd", s, diverged=True) for s in SEVEN])
    claim = momentum_faster_than_sgd(records)
    assert claim.verdict == HOLDS
    assert "sgd η=0.1 not reached;" in claim.evidence[0]
    assert "difference -87 steps" in claim.evidence[0]  # 13 - the 100-step budget


def test_no_verdict_without_the_runs_or_the_measures_it_needs():
    assert adam_faster_than_sgd([run("adam", 0), run("adam", 1)]).verdict is None
    # no target accuracy, and different lengths: nothing to measure
    records = [run("adam", 0, target=None, steps=50), run("sgd", 0, target=None, steps=80)]
    claim = adam_faster_than_sgd(records)
    assert claim.verdict is None and "no measure" in claim.evidence[0]
    # without a target only the loss at equal steps is measured
    records = pair("adam", "sgd", [(None, 0.1 + s / 100) for s in SEVEN],
                   [(None, 0.3 + s / 100) for s in SEVEN], target=None)
    claim = adam_faster_than_sgd(records)
    assert claim.verdict == HOLDS and len(claim.evidence) == 1


def accuracy_runs(optimizer, accs):
    return [run(optimizer, i, acc=a) for i, a in enumerate(accs)]


def test_tuned_sgd_matching_adam_is_judged_only_on_tuned_runs():
    adam = [0.90, 0.92, 0.91, 0.93, 0.90, 0.92, 0.91]
    mixed = [0.91, 0.91, 0.92, 0.92, 0.89, 0.93, 0.90]  # differences of both signs
    records = accuracy_runs("adam", adam) + accuracy_runs("sgd", mixed)
    assert tuned_sgd_matches_adam(records, tuned=False).verdict is None
    claim = tuned_sgd_matches_adam(records, tuned=True)
    assert claim.verdict == HOLDS and "matched: no difference detected" in claim.evidence[0]
    above = accuracy_runs("adam", [a - 0.1 for a in adam]) + accuracy_runs("sgd", adam)
    assert tuned_sgd_matches_adam(above, tuned=True).verdict == HOLDS
    below = accuracy_runs("adam", adam) + accuracy_runs("sgd", [a - 0.2 for a in adam])
    assert tuned_sgd_matches_adam(below, tuned=True).verdict == FAILS
    two = accuracy_runs("adam", [0.90, 0.92]) + accuracy_runs("sgd", [0.70, 0.75])
    claim = tuned_sgd_matches_adam(two, tuned=True)
    assert claim.verdict == UNDECIDED and "too few seeds" in claim.evidence[0]
    # "SGD or Momentum": momentum matching is enough
    either = below + accuracy_runs("momentum", mixed)
    assert tuned_sgd_matches_adam(either, tuned=True).verdict == HOLDS


def test_learning_rate_is_crucial_from_the_sweeps_spread():
    wide = {"adam": {1e-3: [0.5, 0.52], 1e-2: [0.9, 0.91], 1e-1: [0.7, 0.72]}}
    claim = learning_rate_is_crucial(wide)
    assert claim.verdict == HOLDS and "spans 39.5 points (best η=0.01)" in claim.evidence[0]
    flat = {"adam": {1e-3: [0.88, 0.92], 1e-2: [0.89, 0.91], 1e-1: [0.9, 0.93]}}
    assert learning_rate_is_crucial(flat).verdict == FAILS
    one_seed = {"adam": {1e-3: [0.5], 1e-2: [0.9], 1e-1: [0.7]}}
    assert learning_rate_is_crucial(one_seed).verdict == UNDECIDED
    diverging = {"sgd": {0.1: [0.8], 1.0: [0.85], 10.0: [None]}}
    claim = learning_rate_is_crucial(diverging)
    assert claim.verdict == HOLDS and "η=10 diverged" in claim.evidence[0]
    assert learning_rate_is_crucial({"adam": {1e-3: [0.5], 1e-2: [0.9]}}).verdict is None


def step_sizes(optimizer, lo, hi):
    return {"run": f"{optimizer}-seed0", "optimizer": optimizer, "diagnostics": {"step_sizes": {
        "kind": "optimlab.step_sizes", "quantiles": [0.1, 0.5, 0.9], "steps": [50, 100],
        "effective_step": {"0.weight": {"q0.1": [1.0, lo], "q0.5": [1.0, lo], "q0.9": [1.0,
                                                                                      hi]}}}}}


def test_rmsprop_step_contrast_from_the_diagnostics():
    claim = rmsprop_large_gradients_smaller_steps([step_sizes("rmsprop", 1e-3, 5e-3)])
    assert claim.verdict == HOLDS and "×5" in claim.evidence[0] and "step 100" in claim.evidence[0]
    flat = rmsprop_large_gradients_smaller_steps([step_sizes("rmsprop", 1e-3, 1.5e-3)])
    assert flat.verdict == UNDECIDED
    assert rmsprop_large_gradients_smaller_steps([step_sizes("adam", 1e-3, 5e-3)]).verdict is None
    assert rmsprop_large_gradients_smaller_steps([]).verdict is None


def test_every_claim_is_listed_even_when_it_cannot_be_decided():
    claims = lecture_claims([])
    assert len(claims) == 5 and all(c.verdict is None and c.evidence for c in claims)


def test_a_tuned_eta_on_its_grids_edge_leaves_the_tuned_comparisons_undecided():
    """SGD below Adam in every seed does not match it, unless SGD's tuned η sits on the
    edge of its grid: a better η may lie beyond, so nothing is decided, and the page says
    why first. Claims that tuning does not choose keep their verdict."""
    records = ([run("sgd", i, acc=0.6 + i / 100, ttt=50.0 + i, lr=1.0) for i in SEVEN]
               + [run("adam", i, acc=0.9 + i / 100, ttt=10.0 + i, lr=0.01) for i in SEVEN])
    lines = {"sgd": {0.01: [0.3, 0.31], 0.1: [0.5, 0.52], 1.0: [0.6, 0.62]}}
    plain = lecture_claims(records, tuned=True, lr_lines=lines)
    edged = lecture_claims(records, tuned=True, lr_lines=lines, edges={"sgd": {"lr": "high"}})
    assert [c.verdict for c in plain[:4]] == [HOLDS, None, FAILS, HOLDS]
    assert [c.verdict for c in edged[:4]] == [UNDECIDED, None, UNDECIDED, HOLDS]
    assert edged[2].evidence[0].startswith("sgd's tuned η=1 lies on the high edge of its grid")
    assert edged[2].evidence[1:] == plain[2].evidence
    inside = lecture_claims(records, tuned=True, edges={"sgd": {}, "momentum": {"lr": "low"}})
    assert inside[2].verdict == FAILS  # no momentum runs here: its edge decides nothing


def test_evidence_states_the_seeds_a_side_lacks():
    m = Measure("steps to 80% validation accuracy", "sgd", "adam", (10.0, None, 30.0),
                (5.0, 6.0, 7.0), True, " steps", cap=100)
    (m, row), = judge([m])
    # the restricted mean the test compares: (10 + 100 + 30) / 3
    assert evidence(m, row).startswith(
        "steps to 80% validation accuracy: sgd 46.7 steps (1 of 3 not reached, counted at "
        "the 100-step budget) vs adam 6 steps — too few seeds: 3 paired seeds")
