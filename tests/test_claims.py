"""The claims panel's verdicts, on made-up records: every outcome of every claim."""

from __future__ import annotations

import math

import pytest

from optimlab.report.claims import (
    FAILS,
    HOLDS,
    UNDECIDED,
    Measure,
    adam_faster_than_sgd,
    combine,
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
            else acc, "time_to_target_s": ttt, "final_train_loss": None if diverged else loss,
            "diverged": diverged}


def pair(a, b, a_vals, b_vals, **kw):
    """Runs of optimizers a and b, one per (time to target, loss) tuple."""
    return ([run(a, i, ttt=t, loss=lo, **kw) for i, (t, lo) in enumerate(a_vals)] +
            [run(b, i, ttt=t, loss=lo, **kw) for i, (t, lo) in enumerate(b_vals)])


@pytest.mark.parametrize("a, b, lower, expected", [
    ((1.0, 2.0), (3.0, 4.0), True, HOLDS),
    ((3.0, 4.0), (1.0, 2.0), True, FAILS),
    ((1.0, 3.5), (3.0, 4.0), True, UNDECIDED),  # overlapping ranges
    ((1.0,), (3.0, 4.0), True, UNDECIDED),  # one seed: no spread
    ((0.9, 0.95), (0.5, 0.6), False, HOLDS),  # higher is better
    ((math.inf, math.inf), (3.0, 4.0), True, FAILS),  # never reached vs reached
    ((math.inf, math.inf), (math.inf, math.inf), True, UNDECIDED),
])
def test_one_measure_decides_only_when_the_seed_ranges_do_not_overlap(a, b, lower, expected):
    assert Measure("m", "A", "B", a, b, lower).verdict == expected


def test_measures_combine_conservatively():
    assert combine([HOLDS, UNDECIDED]) == HOLDS
    assert combine([FAILS, UNDECIDED]) == FAILS
    assert combine([HOLDS, FAILS]) == UNDECIDED
    assert combine([UNDECIDED, UNDECIDED]) == UNDECIDED


def test_adam_faster_holds_with_the_numbers_behind_it():
    records = pair("adam", "sgd", [(2.0, 0.2), (2.5, 0.25)], [(6.0, 0.5), (7.0, 0.6)])
    claim = adam_faster_than_sgd(records)
    assert claim.verdict == HOLDS
    assert claim.evidence[0].startswith("time to 80% validation accuracy: adam η=0.1 2.25 s "
                                        "[2 s…2.5 s, 2 seeds] vs sgd η=0.1 6.5 s")
    assert "train loss after 100 steps" in claim.evidence[1]


def test_adam_faster_does_not_hold_when_sgd_wins_every_seed():
    records = pair("adam", "sgd", [(6.0, 0.5), (7.0, 0.6)], [(2.0, 0.2), (2.5, 0.25)])
    assert adam_faster_than_sgd(records).verdict == FAILS


def test_adam_faster_is_undecided_within_the_seed_spread_or_with_one_seed():
    overlap = pair("adam", "sgd", [(2.0, 0.2), (5.0, 0.5)], [(3.0, 0.3), (4.0, 0.4)])
    assert adam_faster_than_sgd(overlap).verdict == UNDECIDED
    one_seed = pair("adam", "sgd", [(2.0, 0.2)], [(6.0, 0.6)])
    claim = adam_faster_than_sgd(one_seed)
    assert claim.verdict == UNDECIDED and "one seed" in claim.evidence[0]


def test_measures_that_disagree_leave_the_claim_undecided():
    records = pair("adam", "sgd", [(2.0, 0.6), (2.5, 0.7)], [(6.0, 0.2), (7.0, 0.3)])
    assert adam_faster_than_sgd(records).verdict == UNDECIDED


def test_a_diverged_seed_counts_as_the_worst():
    records = ([run("momentum", s, ttt=1.0 + s, loss=0.1) for s in range(2)] +
               [run("sgd", s, diverged=True) for s in range(2)])
    claim = momentum_faster_than_sgd(records)
    assert claim.verdict == HOLDS and "never" in claim.evidence[0]


def test_no_verdict_without_the_runs_or_the_measures_it_needs():
    assert adam_faster_than_sgd([run("adam", 0), run("adam", 1)]).verdict is None
    # no target accuracy, and different lengths: nothing to measure
    records = [run("adam", 0, target=None, steps=50), run("sgd", 0, target=None, steps=80)]
    claim = adam_faster_than_sgd(records)
    assert claim.verdict is None and "no measure" in claim.evidence[0]
    # without a target only the loss at equal steps is measured
    records = pair("adam", "sgd", [(None, 0.1), (None, 0.2)], [(None, 0.3), (None, 0.4)],
                   target=None)
    claim = adam_faster_than_sgd(records)
    assert claim.verdict == HOLDS and len(claim.evidence) == 1


def accuracy_runs(optimizer, accs):
    return [run(optimizer, i, acc=a) for i, a in enumerate(accs)]


def test_tuned_sgd_matching_adam_is_judged_only_on_tuned_runs():
    records = accuracy_runs("adam", [0.90, 0.92]) + accuracy_runs("sgd", [0.91, 0.93])
    assert tuned_sgd_matches_adam(records, tuned=False).verdict is None
    claim = tuned_sgd_matches_adam(records, tuned=True)
    assert claim.verdict == HOLDS and "matched within the seed spread" in claim.evidence[0]
    above = accuracy_runs("adam", [0.80, 0.82]) + accuracy_runs("sgd", [0.91, 0.93])
    assert tuned_sgd_matches_adam(above, tuned=True).verdict == HOLDS
    below = accuracy_runs("adam", [0.90, 0.92]) + accuracy_runs("sgd", [0.70, 0.75])
    assert tuned_sgd_matches_adam(below, tuned=True).verdict == FAILS
    one = accuracy_runs("adam", [0.90]) + accuracy_runs("sgd", [0.70])
    assert tuned_sgd_matches_adam(one, tuned=True).verdict == UNDECIDED
    # "SGD or Momentum": momentum matching is enough
    either = below + accuracy_runs("momentum", [0.89, 0.95])
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
    records = ([run("sgd", i, acc=a, ttt=5.0 + i, lr=1.0) for i, a in enumerate((0.6, 0.62))]
               + [run("adam", i, acc=a, ttt=1.0 + i, lr=0.01)
                  for i, a in enumerate((0.9, 0.91))])
    lines = {"sgd": {0.01: [0.3, 0.31], 0.1: [0.5, 0.52], 1.0: [0.6, 0.62]}}
    plain = lecture_claims(records, tuned=True, lr_lines=lines)
    edged = lecture_claims(records, tuned=True, lr_lines=lines, edges={"sgd": {"lr": "high"}})
    assert [c.verdict for c in plain[:4]] == [HOLDS, None, FAILS, HOLDS]
    assert [c.verdict for c in edged[:4]] == [UNDECIDED, None, UNDECIDED, HOLDS]
    assert edged[2].evidence[0].startswith("sgd's tuned η=1 lies on the high edge of its grid")
    assert edged[2].evidence[1:] == plain[2].evidence
    inside = lecture_claims(records, tuned=True, edges={"sgd": {}, "momentum": {"lr": "low"}})
    assert inside[2].verdict == FAILS  # no momentum runs here: its edge decides nothing


def test_one_seed_is_shown_without_a_range():
    text = Measure("final test accuracy", "sgd", "adam", (0.5,), (0.6, 0.7), False, "%").text()
    assert text == ("final test accuracy: sgd 50.0% (one seed) vs adam 65.0% [60.0%…70.0%, "
                    "2 seeds] — one seed: no spread")
