"""Random search (Bergstra & Bengio 2012): configurations sampled from ranges `LO:HI`.

Each hyperparameter is sampled uniformly on the scale its optimizer's specification
declares (`optimlab.optim._spec.Number.scale`): log-uniform η, ε and weight decay, and
log-uniform 1 - β for the decay rates, as Choi et al. 2019 search them. A key given as a
list is drawn from the list.

Trial i of an optimizer entry comes from its own generator, seeded by (seed, entry label,
i), never from a stream shared with the other trials: it does not depend on how many
trials there are, so the first N of 2N trials are the same N, and a sweep grows by running
again with more trials (it is "anytime").
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from optimlab.optim._spec import Number

SEARCHES = ("grid", "random", "tpe")  # tpe: optimlab.lab.tpe

# A value sampled within this fraction of its range's length (on its scale) from an end lies
# on that edge: the optimum may lie beyond the range. Not "the lowest or highest value
# sampled": a key that does not matter would be chosen at one of those with chance 2/N.
EDGE_BAND = 0.05


@dataclass(frozen=True)
class Range:
    """Values in [lo, hi], spread uniformly on `scale` (see `Number.scale`)."""

    lo: float
    hi: float
    scale: str

    def at(self, u: float, digits: int) -> float:
        """The value a fraction `u` in [0, 1) of the way from lo to hi on the scale, to
        `digits` significant digits there (of 1 - x for "log1m": 0.99996 stays below 1)."""
        a, b = _to_scale(self.lo, self.scale), _to_scale(self.hi, self.scale)
        y = _from_scale(a + u * (b - a), self.scale)
        if self.scale == "log1m":  # 1 - 0.0257 is 0.9742999999999999 in binary: show 0.9743
            y = float(f"{1 - float(f'{1 - y:.{digits}g}'):.15g}")
        else:
            y = float(f"{y:.{digits}g}")
        return min(max(y, self.lo), self.hi)


    def side(self, x: float) -> str | None:
        """"low" or "high" when `x` lies within EDGE_BAND of that end of the range (on its
        scale), else None."""
        a, b = _to_scale(self.lo, self.scale), _to_scale(self.hi, self.scale)
        u = (_to_scale(x, self.scale) - a) / (b - a)
        return "low" if u < EDGE_BAND else "high" if u > 1 - EDGE_BAND else None


def _to_scale(x: float, scale: str) -> float:
    return math.log(x) if scale == "log" else math.log(1 - x) if scale == "log1m" else x


def _from_scale(y: float, scale: str) -> float:
    return math.exp(y) if scale == "log" else 1 - math.exp(y) if scale == "log1m" else y


def parse_range(key: str, text: str) -> tuple[float, float]:
    """`"LO:HI"` as (LO, HI); a ValueError naming `key` unless LO < HI, both finite."""
    try:
        lo, hi = (float(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"Invalid {key}: {text!r}; allowed: LO:HI, two numbers with "
                         "LO < HI") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"Invalid {key}: {text!r}: LO must be below HI; allowed: LO:HI "
                         "with LO < HI")
    return lo, hi


def search_range(key: str, lo: float, hi: float, number: Number) -> Range:
    """The `Range` [lo, hi] of `key` on `number`'s scale; a ValueError naming `key` and
    the range unless every value in it is allowed and the scale can reach it (log: lo > 0)."""
    low_ok = lo > number.lo if number.scale == "log" else lo >= number.lo
    if not (low_ok and hi < number.hi):
        bound = "0 < LO" if number.scale == "log" else f"{number.lo:g} <= LO"
        high = "" if math.isinf(number.hi) else f" < {number.hi:g}"
        raise ValueError(f"Invalid {key}: {lo:g}:{hi:g} lies outside the values {key} takes "
                         f"({number.scale} scale); allowed: {bound} < HI{high}")
    return Range(lo, hi, number.scale)


def trial(seed: int, label: str, i: int, space: Mapping[str, Range | tuple[float, ...]],
          digits: int) -> dict[str, float]:
    """Trial `i` of entry `label`: one value per key of `space` (a `Range` sampled on its
    scale, a tuple drawn from), from a generator of (seed, label, i) alone."""
    rng = random.Random(f"{seed}:{label}:{i}")  # a str seed hashes the same in every process
    point = {}
    for key in sorted(space):
        values = space[key]
        point[key] = values.at(rng.random(), digits) if isinstance(values, Range) \
            else rng.choice(values)
    return point
