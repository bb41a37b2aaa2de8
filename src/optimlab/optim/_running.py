"""A running sum or product over the steps i ≤ t, per key of continuous hyperparameters."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class Running:
    """acc₀ = `start`, accᵢ = `extend(key, i, accᵢ₋₁)`: accₜ. Keeps per key only the last
    (t, accₜ) and goes forward from it (from 0 when t goes back), for at most `keys` keys,
    the least recently used dropped: a random search meets a new key each trial. The
    operations are those of a list grown from 0, in the same order: the same floats."""

    def __init__(self, start: float, extend: Callable[[Any, int, float], float],
                 keys: int = 64):
        self._start, self._extend, self._keys = start, extend, keys
        self._last: OrderedDict[Hashable, tuple[int, float]] = OrderedDict()

    def __call__(self, key: Hashable, t: int) -> float:
        i, acc = self._last.pop(key, (0, self._start))
        if t < i:
            i, acc = 0, self._start
        while i < t:
            i += 1
            acc = self._extend(key, i, acc)
        self._last[key] = (i, acc)
        if len(self._last) > self._keys:
            self._last.popitem(last=False)
        return acc
