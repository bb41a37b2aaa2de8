"""Positional lookup: an offline, generated sequence task for the transformer.

Each example is LENGTH digit tokens (0..9) followed by a query token QUERY0 + i that names
a position i; the label is the digit at position i (ten classes, as every built-in
dataset). Answering takes attention from the query to one position, which is what a
transformer's learned positions and dot-product attention provide. Generated with a fixed
seed: every machine gets the same examples, in milliseconds.
"""

from __future__ import annotations

import numpy as np

from optimlab.data.dataset import Arrays

LENGTH = 8  # digits per sequence: 9 tokens with the query
QUERY0 = 10  # query tokens follow the ten digit tokens: QUERY0 .. QUERY0 + LENGTH - 1
# A train set of MNIST-1D's order; test large enough that 1 % is 20 examples. One draw.
TRAIN, TEST, SEED = 5_000, 2_000, 0


def sequences(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` sequences [n, LENGTH + 1] of token ids and their labels [n]."""
    x = rng.integers(0, 10, size=(n, LENGTH + 1))
    asked = rng.integers(0, LENGTH, size=n)
    y = x[np.arange(n), asked]
    x[:, -1] = QUERY0 + asked
    return x, y


def load_lookup() -> Arrays:
    rng = np.random.default_rng(SEED)
    x_train, y_train = sequences(TRAIN, rng)
    x_test, y_test = sequences(TEST, rng)
    return Arrays(x_train, y_train, x_test, y_test, pixels=False)
