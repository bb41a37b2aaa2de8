"""scikit-learn's digits (UCI optical digits): 1,797 8×8 images, shipped with the package.

Offline and small, for the examples. Pixels are counts 0..16, scaled to [0, 1] and
given one channel ([N, 1, 8, 8]). The package has no test split: TEST_SIZE examples,
chosen with a fixed seed, are held out as test (the same for every run's seed).
"""

from __future__ import annotations

import numpy as np

from optimlab.data.dataset import Arrays, split_indices

# One sixth held out as test, chosen once (seed 0) so every run reports on the same examples.
TEST_FRACTION, TEST_SEED = 1 / 6, 0


def load_digits() -> Arrays:
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ValueError("the digits dataset needs scikit-learn: pip install "
                         "'optimlab[examples]'") from None
    bunch = sklearn_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]  # [N, 1, 8, 8]
    y = np.asarray(bunch.target, dtype=np.int64)
    keep, test = split_indices(len(y), TEST_FRACTION, TEST_SEED)
    return Arrays(x[keep], y[keep], x[test], y[test], pixels=False)
