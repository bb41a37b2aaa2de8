"""Paired comparisons of two entries, and the expected best of k trials: pure functions.

A comparison pairs the runs of entries a and b by seed (the same initial weights and
minibatch order), so each seed gives one difference d_i = a_i - b_i of a measure:
- `difference`: mean(a) - mean(b) = mean(d), in the measure's unit;
- `ci`: the t-interval on the paired differences, at level 1 - alpha (95% by default);
- `p`: the two-sided paired sign-flip permutation test of mean(d) = 0. Under "a and b are
  equal" the two runs of a seed are exchangeable, so every sign pattern of d is as likely;
  p is the share of the 2^n patterns whose |mean| reaches the observed one, enumerated
  exactly up to 2^16 patterns (Monte Carlo beyond). Its smallest value is 2 / 2^n;
- `p_holm`: p corrected across the measures of one pair (Holm 1979);
- `verdict`: "a better" / "b better" when p_holm <= alpha, by the sign of the difference
  and the measure's direction; "no difference detected" otherwise; "too few seeds" when
  no outcome of these seeds could reach alpha (tests x 2 / 2^n > alpha: 2..5 seeds for one
  measure at alpha 0.05); "not reached" when no run of either entry reached the target;
- `seeds_needed`: the fewest seeds at which the test can reach alpha at all (a small
  difference needs more).

A target that a run did not reach (time to target, given as None with `cap`, the step
budget) counts at the budget: the measure becomes the restricted mean time to target
(Royston & Parmar 2013), never 0 or inf in a mean. A pair where only one run reached is a
win for it by at least the gap to the budget; a pair where neither reached is a tie. The
same cap applied to both runs of a seed keeps them exchangeable, so the test stays exact.
Elsewhere a pair with a missing value (a non-finite metric) is left out, and n says so.

References:
- Good, P. (2005). Permutation, Parametric and Bootstrap Tests of Hypotheses, 3rd ed.
  Springer (the one-sample / paired permutation test).
- Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scandinavian
  Journal of Statistics 6(2), 65-70.
- Royston, P., Parmar, M. K. B. (2013). Restricted mean survival time: an alternative to
  the hazard ratio for the design and analysis of randomized trials with a time-to-event
  outcome. BMC Medical Research Methodology 13, 152.
- Dodge, J., Gururangan, S., Card, D., Schwartz, R., Smith, N. A. (2019). Show Your Work:
  Improved Reporting of Experimental Results. EMNLP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

# scipy is imported where it is used: scipy.stats takes seconds to import, and a command
# that only checks its flags, or a run that fails early, should not wait for it.

ALPHA = 0.05  # the conventional level; the interval is then the usual 95%
A_BETTER, B_BETTER = "a better", "b better"
NO_DIFFERENCE, TOO_FEW, NOT_REACHED = "no difference detected", "too few seeds", "not reached"
EXACT_UP_TO = 16  # seeds: 2^16 sign patterns enumerate in a fraction of a second
INTERVAL = "t-interval on the paired differences"


def check_alpha(alpha: float) -> float:
    """`alpha` as a float, or a one-line ValueError: a test at alpha >= 0.5 decides nothing."""
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0 < alpha < 0.5:
        raise ValueError(f"Invalid alpha: {alpha!r}; allowed: a number in (0, 0.5)")
    return float(alpha)


def _mean(d: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(d, axis=axis)


def sign_flip_p(d: Sequence[float] | np.ndarray) -> np.ndarray:
    """Two-sided p of the paired sign-flip test of mean(d) = 0 over the last axis of `d`
    (leading axes: independent tests); exact up to EXACT_UP_TO pairs, seeded Monte Carlo
    with 2^EXACT_UP_TO sign patterns beyond."""
    d = np.asarray(d, float)
    if d.shape[-1] < 2:  # both patterns of one pair reach |d|; scipy wants two pairs
        return np.ones(d.shape[:-1])
    if d.shape[-1] <= EXACT_UP_TO:
        return _enumerated_p(d)
    from scipy import stats

    # scipy holds batch x d.size flipped values at once: unbounded, many tests at once ran
    # much slower in fresh memory than at this bound (docs/performance.md, 'Behind the code')
    batch = max(1, 2 ** 20 // max(1, d.size))
    return stats.permutation_test((d,), _mean, permutation_type="samples", vectorized=True,
                                  n_resamples=2 ** EXACT_UP_TO, batch=batch, axis=-1,
                                  rng=0).pvalue


def _enumerated_p(d: np.ndarray) -> np.ndarray:
    """`sign_flip_p` over all 2^n sign patterns, as scipy.stats.permutation_test computes
    it (its tolerance for ties included), in NumPy: importing scipy.stats cost every
    sweep's report a second, for a handful of pairs."""
    n = d.shape[-1]
    signs = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    rows = d.reshape(-1, n)
    out = np.empty(len(rows))
    step = max(1, 2 ** 20 // 2 ** n)  # tests at once, so that the null stays ~8 MB
    for a in range(0, len(rows), step):
        x = rows[a:a + step]
        observed = x.mean(axis=1, keepdims=True)
        null = x @ signs.T / n
        tie = np.abs(100 * np.finfo(float).eps * observed)
        less, greater = (null <= observed + tie).mean(1), (null >= observed - tie).mean(1)
        out[a:a + step] = np.minimum(1.0, 2 * np.minimum(less, greater))
    return out.reshape(d.shape[:-1])


def smallest_p(n: int) -> float:
    """The smallest two-sided p that n pairs can give: both all-same-sign patterns."""
    return min(1.0, 2.0 / 2.0 ** n)


def seeds_needed(alpha: float, tests: int = 1) -> int:
    """The fewest pairs whose smallest p, Holm-corrected over `tests`, reaches alpha."""
    n = 1
    while tests * smallest_p(n) > alpha:
        n += 1
    return n


def verdict(difference: float, p: float, n: int, *, alpha: float, lower_is_better: bool,
            tests: int = 1) -> str:
    """The verdict on one measure from its (Holm-corrected over `tests`) p."""
    if tests * smallest_p(n) > alpha:
        return TOO_FEW
    if p > alpha:
        return NO_DIFFERENCE
    return A_BETTER if (difference < 0) == lower_is_better else B_BETTER


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the j-th smallest of m is
    multiplied by m - j + 1, kept non-decreasing and capped at 1."""
    adjusted = [0.0] * len(p)
    running = 0.0
    for rank, i in enumerate(sorted(range(len(p)), key=lambda i: p[i])):
        running = max(running, (len(p) - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted


@dataclass(frozen=True)
class PairedMeasure:
    """One measure of entries a and b, position i of `a` and `b` being seed i's runs."""

    name: str
    a: Sequence[float | None]
    b: Sequence[float | None]
    lower_is_better: bool
    cap: float | None = None  # a target's step budget: None then means "not reached"

    def __post_init__(self) -> None:
        if len(self.a) != len(self.b):
            raise ValueError(f"Invalid measure {self.name!r}: {len(self.a)} values of a, "
                             f"{len(self.b)} of b; allowed: one value of each per seed")

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """The paired values: missing ones at the cap, or their pairs left out without one."""
        pairs = [(x, y) for x, y in zip(self.a, self.b)
                 if self.cap is not None or (_finite(x) and _finite(y))]
        filled = [[self.cap if v is None else v for v in pair] for pair in pairs]
        a, b = np.array(filled, float).reshape(-1, 2).T
        return a, b


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def interval(d: np.ndarray, level: float) -> list[float] | None:
    """The t-interval on the mean of the paired differences; None below two pairs."""
    if len(d) < 2:
        return None
    if np.ptp(d) <= 1e-12 * np.max(np.abs(d)):  # no spread (up to rounding): the point
        return [float(np.mean(d)), float(np.mean(d))]
    from scipy import special  # not scipy.stats: its import costs a report a second

    half = special.stdtrit(len(d) - 1, (1 + level) / 2) * np.std(d, ddof=1) / np.sqrt(len(d))
    return [float(np.mean(d) - half), float(np.mean(d) + half)]


def _test_name(n: int) -> str:
    how = f"exact over 2^{n}" if n <= EXACT_UP_TO else f"Monte Carlo, 2^{EXACT_UP_TO}"
    return f"paired sign-flip permutation, two-sided ({how} sign patterns)"


def _one(a_name: str, b_name: str, m: PairedMeasure, alpha: float) -> dict[str, Any]:
    """The comparison on one measure, before the correction across measures."""
    a, b = m.values()
    d = a - b
    row: dict[str, Any] = {"a": a_name, "b": b_name, "measure": m.name, "n": len(d),
                           "lower_is_better": m.lower_is_better, "alpha": alpha,
                           "test": _test_name(len(d)), "interval": INTERVAL,
                           "ci_level": 1 - alpha}
    if m.cap is not None:
        row["not_reached"] = [sum(v is None for v in m.a), sum(v is None for v in m.b)]
        if row["not_reached"] == [len(m.a), len(m.b)]:
            return row | {"difference": None, "ci": None, "p": None, "p_holm": None,
                          "verdict": NOT_REACHED}
    if not len(d):
        return row | {"difference": None, "ci": None, "p": None, "p_holm": None,
                      "verdict": TOO_FEW}
    return row | {"difference": float(np.mean(d)), "ci": interval(d, 1 - alpha),
                  "p": float(sign_flip_p(d))}


def compare_pair(a_name: str, b_name: str, measures: Sequence[PairedMeasure],
                 alpha: float = ALPHA) -> list[dict[str, Any]]:
    """One comparison object per measure of entries a and b (see the module docstring),
    Holm-corrected across the measures that have a p."""
    alpha = check_alpha(alpha)
    rows = [_one(a_name, b_name, m, alpha) for m in measures]
    tested = [r for r in rows if r["p"] is not None]
    for r, p in zip(tested, holm([r["p"] for r in tested]), strict=True):
        r["p_holm"] = p
        r["verdict"] = verdict(r["difference"], p, r["n"], alpha=alpha,
                               lower_is_better=r["lower_is_better"], tests=len(tested))
    for r in rows:
        r["seeds_needed"] = seeds_needed(alpha, max(1, len(tested)))
    return rows


def expected_best(scores: Sequence[float], *, higher_is_better: bool = True) -> np.ndarray:
    """E[best of k trials drawn without replacement from `scores`], for k = 1..N.

    With x_(1) <= ... <= x_(N) sorted, the best of k is x_(i) when the draw holds x_(i) and
    k - 1 of the i - 1 below it: E_k = sum_i C(i-1, k-1) / C(N, k) x_(i) (the U-statistic
    of the expected maximum; Dodge et al. 2019 draw with replacement instead, which at
    k = N falls short of the best score seen). `scores` must be finite: a caller decides
    what a diverged trial scores.
    """
    x = np.asarray(scores, float)
    if x.ndim != 1 or not len(x) or not np.isfinite(x).all():
        raise ValueError(f"Invalid scores: {list(np.ravel(x))!r}; allowed: one or more "
                         "finite numbers")
    sign = 1.0 if higher_is_better else -1.0
    return sign * (_order_weights(len(x)) @ np.sort(sign * x))


def _order_weights(n: int) -> np.ndarray:
    """W[k-1, i-1] = C(i-1, k-1) / C(n, k): the chance that x_(i) is the best of k draws."""
    # log m! for m = 0..n as a running sum: a sweep's outputs then need no scipy (its
    # special functions, imported with scipy.stats, cost the command a second)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    k = np.arange(1, n + 1)[:, None]
    i = np.arange(1, n + 1)[None, :]
    log_w = (log_fact[i - 1] - log_fact[k - 1] - log_fact[np.maximum(i - k, 0)]
             - log_fact[n] + log_fact[k] + log_fact[n - k])
    return np.where(i >= k, np.exp(log_w), 0.0)


def expected_best_band(scores: Sequence[float], *, higher_is_better: bool = True,
                       level: float = 0.95, resamples: int = 2000
                       ) -> tuple[np.ndarray, np.ndarray]:
    """A percentile bootstrap band (low, high) around `expected_best`, resampling the
    trials with replacement (seeded: the same scores give the same band). Written out in
    NumPy, as scipy.stats.bootstrap's percentile method computes it (the tests hold the
    two together): importing scipy.stats cost every sweep a second, for this band."""
    observed = expected_best(scores, higher_is_better=higher_is_better)
    if len(observed) == 1:  # every resample of one trial is that trial
        return observed, observed
    x = np.asarray(scores, float)
    sign = 1.0 if higher_is_better else -1.0
    draws = np.random.default_rng(0).integers(0, len(x), (resamples, len(x)))
    curves = sign * (np.sort(sign * x[draws], axis=-1) @ _order_weights(len(x)).T)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(curves, [tail, 100 - tail], axis=0)
    return low, high
