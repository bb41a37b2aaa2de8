"""`optimlab.analysis.stats`: paired tests and verdicts, Holm, expected best of k.

The references are independent of the code under test: sign patterns enumerated by hand,
Holm worked on paper, t quantiles from tables, every k-subset enumerated, and simulated
contenders whose truth is known.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from optimlab.analysis.stats import (
    A_BETTER,
    B_BETTER,
    EXACT_UP_TO,
    NO_DIFFERENCE,
    NOT_REACHED,
    TOO_FEW,
    PairedMeasure,
    _order_weights,
    compare_pair,
    expected_best,
    expected_best_band,
    holm,
    seeds_needed,
    sign_flip_p,
    verdict,
)

DRAWS = 10_000


def enumerated_p(d: list[float]) -> float:
    """Two-sided sign-flip p by listing all 2^n sign patterns."""
    observed = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-12
               for signs in itertools.product((-1, 1), repeat=len(d)))
    return hits / 2 ** len(d)


def imported(calls: str, module: str) -> bool:
    """Whether a fresh process that runs `calls` (on `s`, the stats module) imports
    `module`."""
    code = (f"import sys; from optimlab.analysis import stats as s; {calls}; "
            f"print({module!r} in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() in ("True", "False"), done.stderr[-2000:]
    return done.stdout.strip() == "True"


def test_the_analysis_layer_needs_no_torch():
    assert not imported("s.compare_pair('a', 'b', [s.PairedMeasure('m', [1, 2, 3], [2, 2, 5], "
                        "True)]); s.expected_best_band([0.1, 0.4])", "torch")


@pytest.mark.parametrize("d, by_hand", [
    ([1.0, -2.0, 3.0], 6 / 8),  # sums ±1±2±3: 6, 2, 0, -4, 4, 0, -2, -6; six reach |2|
    ([1.0, 2.0, 3.0, 4.0, 5.0], 2 / 32),  # only all-plus and all-minus reach 15
    ([0.5, 0.5, 0.5, -0.5], 10 / 16),  # |sum| >= 1: the patterns with 0/1 or 3/4 minus
    ([0.0, 0.0, 2.0], 1.0),  # the zeros flip for free: every pattern reaches |2|
])
def test_exact_p_matches_the_patterns_counted_by_hand(d, by_hand):
    assert enumerated_p(d) == pytest.approx(by_hand)
    assert float(sign_flip_p(d)) == pytest.approx(by_hand)


def test_exact_p_matches_full_enumeration_on_random_data_and_batches():
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1, (25, 7))
    assert np.allclose(sign_flip_p(d), [enumerated_p(list(row)) for row in d])


def test_beyond_2_16_patterns_the_p_is_a_close_monte_carlo_estimate():
    n = EXACT_UP_TO + 1
    d = np.random.default_rng(7).normal(0.3, 1, n)
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)  # every pattern
    exact = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9)
    estimate = float(sign_flip_p(d))
    assert abs(estimate - exact) <= 4 * math.sqrt(exact * (1 - exact) / 2 ** n) + 2 ** -n
    (row,) = compare_pair("a", "b", [PairedMeasure("m", list(d), [0.0] * n, True)])
    assert "Monte Carlo" in row["test"] and row["p"] == estimate


def test_one_seed_gives_p_one_and_too_few_seeds():
    assert float(sign_flip_p([3.0])) == 1.0 and enumerated_p([3.0]) == 1.0
    (row,) = compare_pair("adam", "sgd", [PairedMeasure("final_test_acc", [0.9], [0.5], False)])
    assert (row["n"], row["p"], row["ci"], row["verdict"]) == (1, 1.0, None, TOO_FEW)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_two_to_five_seeds_are_too_few_at_alpha_005_whatever_the_data(n):
    far_apart = PairedMeasure("final_test_loss", [0.1] * n, [9.0 + i for i in range(n)],
                              lower_is_better=True)
    (row,) = compare_pair("adam", "sgd", [far_apart])
    assert row["p"] == pytest.approx(2 / 2 ** n)  # the smallest p n seeds can give
    assert row["verdict"] == TOO_FEW and row["seeds_needed"] == 6


def test_six_seeds_reach_alpha_005_and_the_direction_follows_the_measure():
    loss = PairedMeasure("final_test_loss", [0.1] * 6, [0.5] * 6, lower_is_better=True)
    acc = PairedMeasure("final_test_acc", [0.7] * 6, [0.9] * 6, lower_is_better=False)
    assert compare_pair("adam", "sgd", [loss])[0]["verdict"] == A_BETTER
    assert compare_pair("adam", "sgd", [acc])[0]["verdict"] == B_BETTER
    (row,) = compare_pair("adam", "sgd", [loss], alpha=0.01)
    assert row["verdict"] == TOO_FEW and row["seeds_needed"] == 8  # 2/2^8 <= 0.01 < 2/2^7


def test_holm_against_a_hand_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> kept
    # non-decreasing: 0.02, 0.03, 0.06, 0.06 (Holm 1979); back in the given order:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.4, 0.9]) == [0.8, 0.9]
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_holm_across_measures_sets_the_verdicts_and_the_seeds_needed():
    # 7 seeds: p = 2/128 each; three measures: 3 x 2/128 = 0.047 <= 0.05
    n = 7
    acc = PairedMeasure("final_test_acc", [0.9] * n, [0.8] * n, lower_is_better=False)
    loss = PairedMeasure("final_test_loss", [0.2] * n, [0.3] * n, lower_is_better=True)
    tie = PairedMeasure("time_to_target_step", [10, 20, 10, 20, 10, 20, 10],
                        [20, 10, 20, 10, 20, 10, 20], lower_is_better=True, cap=100)
    rows = compare_pair("adam", "sgd", [acc, loss, tie])
    assert [r["p"] for r in rows] == pytest.approx([2 / 128, 2 / 128, enumerated_p(
        [-10, 10, -10, 10, -10, 10, -10])])
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([r["p"] for r in rows]))
    assert [r["verdict"] for r in rows] == [A_BETTER, A_BETTER, NO_DIFFERENCE]
    assert all(r["seeds_needed"] == 7 for r in rows)  # three tests: 2^n >= 120
    six = compare_pair("adam", "sgd", [PairedMeasure(m.name, m.a[:6], m.b[:6],
                                                     m.lower_is_better, m.cap)
                                       for m in (acc, loss, tie)])
    assert [r["verdict"] for r in six] == [TOO_FEW] * 3  # 3 x 2/64 > 0.05


def test_a_comparison_object_has_every_key_and_the_t_interval():
    d = [1.0, 2.0, 3.0]  # mean 2, sd 1; t(0.975, 2) = 4.302653 from the tables
    (row,) = compare_pair("a", "b", [PairedMeasure("final_test_loss", [x + 5 for x in d],
                                                   [5.0] * 3, lower_is_better=True)])
    assert {"a", "b", "measure", "difference", "ci", "p", "verdict", "test", "alpha", "n",
            "seeds_needed", "p_holm"} <= set(row)
    half = 4.302653 / math.sqrt(3)
    assert row["difference"] == pytest.approx(2.0)
    assert row["ci"] == pytest.approx([2 - half, 2 + half], rel=1e-6)
    assert (row["a"], row["b"], row["n"], row["alpha"]) == ("a", "b", 3, 0.05)
    assert "sign-flip" in row["test"] and "exact" in row["test"]


def test_no_spread_gives_a_point_interval_not_nan():
    (row,) = compare_pair("a", "b", [PairedMeasure("m", [3.0] * 6, [1.0] * 6, True)])
    assert row["ci"] == [2.0, 2.0] and row["verdict"] == B_BETTER


def test_a_target_not_reached_counts_at_the_budget_never_as_zero_or_inf():
    budget = 100
    m = PairedMeasure("time_to_target_step", [10, 20, None], [None, None, None],
                      lower_is_better=True, cap=budget)
    (row,) = compare_pair("adam", "sgd", [m])
    # pairs: 10 - 100, 20 - 100, 100 - 100 (neither reached: a tie)
    assert row["difference"] == pytest.approx((-90 - 80 + 0) / 3)
    assert row["not_reached"] == [1, 3] and math.isfinite(row["difference"])
    assert row["p"] == pytest.approx(enumerated_p([-90, -80, 0]))


def test_a_target_no_run_reached_is_not_reached_with_no_numbers():
    m = PairedMeasure("time_to_target_step", [None] * 6, [None] * 6, True, cap=100)
    (row,) = compare_pair("adam", "sgd", [m])
    assert row["verdict"] == NOT_REACHED
    assert row["difference"] is None and row["ci"] is None and row["p"] is None


def test_a_pair_missing_a_value_is_left_out_without_a_cap():
    m = PairedMeasure("final_test_loss", [0.5, None, 0.4, 0.3],
                      [0.6, 0.7, float("nan"), 0.5], True)
    (row,) = compare_pair("a", "b", [m])
    assert row["n"] == 2 and row["difference"] == pytest.approx(-0.15)


def test_a_measure_needs_one_value_of_each_entry_per_seed():
    with pytest.raises(ValueError, match=r"^Invalid measure 'm': 3 values of a, 2 of b; "):
        PairedMeasure("m", [1.0, 2.0, 3.0], [1.0, 2.0], True)


def test_alpha_may_be_any_real_number_inside_zero_to_half():
    m = PairedMeasure("m", [1.0, 2.0], [2.0, 3.0], True)
    assert compare_pair("a", "b", [m], alpha=np.float32(0.1))[0]["alpha"] == pytest.approx(0.1)


@pytest.mark.parametrize("alpha", [0, 0.5, 0.7, -0.01, float("nan"), True, "0.05", None])
def test_alpha_outside_zero_to_half_is_refused_naming_it(alpha):
    m = PairedMeasure("m", [1.0, 2.0], [2.0, 3.0], True)
    with pytest.raises(ValueError, match=r"^Invalid alpha: .*; allowed: a number in \(0, 0.5\)$"):
        compare_pair("a", "b", [m], alpha=alpha)


def wrong_verdicts(p_holm: np.ndarray, diff: np.ndarray, n: int, tests: int) -> np.ndarray:
    """Per draw: whether any measure got a verdict (between equal contenders, all wrong)."""
    return np.array([[verdict(float(d), float(p), n, alpha=0.05, lower_is_better=True,
                              tests=tests) in (A_BETTER, B_BETTER)
                      for d, p in zip(ds, ps)] for ds, ps in zip(diff, p_holm)]).any(axis=1)


def at_most_alpha(wrong: np.ndarray, alpha: float = 0.05) -> None:
    """The wrong-verdict rate <= alpha within 3 binomial standard errors."""
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / len(wrong))
    assert wrong.mean() <= bound, (wrong.mean(), bound)


def exchangeable(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Paired records of equal contenders: a seed's shared difficulty plus skewed noise drawn
    the same way for a and b, so the two runs of a seed are exchangeable."""
    seed_effect = rng.lognormal(0, 1, shape)
    return seed_effect + rng.exponential(1, shape), seed_effect + rng.exponential(1, shape)


def test_equal_contenders_get_a_wrong_verdict_at_most_alpha_of_the_time():
    a, b = exchangeable(np.random.default_rng(0), (DRAWS, 6))
    d = a - b
    p = sign_flip_p(d)
    wrong = wrong_verdicts(p[:, None], d.mean(axis=1)[:, None], 6, 1)
    at_most_alpha(wrong)
    assert wrong.mean() > 0.02  # the test is not dead: exact at 1/32 in theory


def test_equal_contenders_on_three_measures_holm_keeps_the_familywise_rate():
    a, b = exchangeable(np.random.default_rng(1), (DRAWS, 3, 7))
    d = a - b
    p = sign_flip_p(d)
    p_holm = np.array([holm(list(row)) for row in p])
    at_most_alpha(wrong_verdicts(p_holm, d.mean(axis=2), 7, 3))


def test_power_on_a_known_large_difference():
    # a's loss lower by 1.5 standard deviations of the paired difference, 8 seeds: the paired
    # t-test's power there is 0.951 (noncentral t); the permutation test should be close.
    d = np.random.default_rng(2).normal(-1.5, 1.0, (2000, 8))
    verdicts = [verdict(float(x), float(p), 8, alpha=0.05, lower_is_better=True)
                for x, p in zip(d.mean(axis=1), sign_flip_p(d))]
    assert verdicts.count(A_BETTER) / len(verdicts) >= 0.9
    assert B_BETTER not in verdicts


def test_seeds_needed_is_the_fewest_that_can_reach_alpha():
    for alpha, tests, n in [(0.05, 1, 6), (0.05, 2, 7), (0.05, 3, 7), (0.01, 1, 8),
                            (0.25, 1, 3), (0.0625, 1, 5)]:
        assert seeds_needed(alpha, tests) == n
        assert tests * 2 / 2 ** n <= alpha < tests * 2 / 2 ** (n - 1)


# ---- expected best of k ------------------------------------------------------------------------

def brute_force_expected_best(scores: list[float]) -> list[float]:
    """Average of the max over every k-subset of the trials, k = 1..N."""
    return [float(np.mean([max(c) for c in itertools.combinations(scores, k)]))
            for k in range(1, len(scores) + 1)]


@pytest.mark.parametrize("scores", [
    [0.3, 0.9, 0.5, 0.7, 0.1],
    [0.2, 0.8, 0.8, 0.2, 0.5, 0.6, 0.1],  # ties
    [4.0],
    list(np.random.default_rng(4).normal(size=9)),
])
def test_expected_best_matches_enumerating_every_subset(scores):
    assert expected_best(scores) == pytest.approx(brute_force_expected_best(scores))
    lowest = [-x for x in brute_force_expected_best([-s for s in scores])]
    assert expected_best(scores, higher_is_better=False) == pytest.approx(lowest)


def test_expected_best_runs_from_the_mean_to_the_best_on_many_trials():
    scores = np.random.default_rng(5).uniform(size=400)
    curve = expected_best(scores)
    assert curve[0] == pytest.approx(scores.mean()) and curve[-1] == pytest.approx(scores.max())
    assert np.all(np.diff(curve) >= -1e-12)


def test_expected_best_band_brackets_the_curve_and_is_seeded():
    scores = list(np.random.default_rng(6).normal(size=12))
    low, high = expected_best_band(scores)
    curve = expected_best(scores)
    assert np.all(low <= curve + 1e-12) and np.all(curve <= high + 1e-12)
    assert np.all(low < high)
    low, high = expected_best_band(scores, higher_is_better=False)
    curve = expected_best(scores, higher_is_better=False)
    assert np.all(low <= curve + 1e-12) and np.all(curve <= high + 1e-12)
    low, high = expected_best_band(scores)
    again = expected_best_band(scores)
    assert np.array_equal(again[0], low) and np.array_equal(again[1], high)
    flat_low, flat_high = expected_best_band([0.5] * 5)
    assert np.allclose(flat_low, 0.5) and np.allclose(flat_high, 0.5)
    assert [list(x) for x in expected_best_band([0.7])] == [[0.7], [0.7]]  # one trial


def test_enumerated_p_and_the_interval_are_scipys_without_importing_scipy_stats():
    rng = np.random.default_rng(11)
    d = np.concatenate([rng.normal(0.3, 1, (5, 9)), [[1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 0, 0, 1]]])
    ref = scipy.stats.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis),
                                       permutation_type="samples", vectorized=True,
                                       n_resamples=np.inf, axis=-1).pvalue
    assert np.allclose(sign_flip_p(d), ref, rtol=1e-12, atol=0)  # ties included: last row
    row = d[0]
    ci = scipy.stats.ttest_1samp(row, 0.0).confidence_interval(0.95)
    got = compare_pair("a", "b", [PairedMeasure("m", list(row), [0.0] * 9, True)])[0]
    assert got["ci"] == pytest.approx([ci.low, ci.high], rel=1e-12)
    assert not imported("s.compare_pair('a', 'b', [s.PairedMeasure('m', [1, 2, 3, 5], "
                        "[2, 2, 5, 3], True)])", "scipy.stats")


def test_best_of_k_weights_are_the_binomial_ratios():
    n = 40
    w = _order_weights(n)
    exact = [[math.comb(i - 1, k - 1) / math.comb(n, k) for i in range(1, n + 1)]
             for k in range(1, n + 1)]
    assert np.allclose(w, exact, rtol=1e-12, atol=0)
    assert np.allclose(w.sum(axis=1), 1.0, rtol=1e-12)  # the best of k is one of them


@pytest.mark.parametrize("higher", [True, False])
def test_expected_best_band_is_scipys_percentile_bootstrap_and_needs_no_scipy(higher):
    """The same band as scipy.stats.bootstrap(method="percentile"), within the Monte Carlo
    error of 20,000 resamples each (their random draws differ)."""
    scores = np.random.default_rng(7).normal(size=15)
    sign = 1.0 if higher else -1.0
    weights = _order_weights(len(scores))

    def curves(x, axis):
        ordered = np.sort(sign * np.moveaxis(x, axis, -1), axis=-1)
        return np.moveaxis(sign * (ordered @ weights.T), -1, 0)

    ref = scipy.stats.bootstrap((scores,), curves, vectorized=True, method="percentile",
                                n_resamples=20000, rng=1).confidence_interval
    low, high = expected_best_band(scores, higher_is_better=higher, resamples=20000)
    assert np.allclose(low, ref.low, atol=0.03) and np.allclose(high, ref.high, atol=0.03)
    assert not imported("s.expected_best_band([0.1, 0.4, 0.3])", "scipy")


@pytest.mark.parametrize("scores", [[], [0.5, float("nan")], [[0.1, 0.2]]])
def test_expected_best_refuses_empty_or_non_finite_scores(scores):
    with pytest.raises(ValueError, match="^Invalid scores"):
        expected_best(scores)
