"""The seeding contract: what a seed fixes, and exactly how.

Every optimizer trained under one seed starts from the same weights and sees the
same minibatches in the same order, so curves differ only by the optimizer. The
sweep (`optimlab sweep`, K configurations at once) relies on these two functions
to reproduce single runs exactly; change them only together with it.

- weights: `torch.manual_seed(seed)` immediately followed by `models.build(...)`
  (in float32, then cast to the run's dtype, so float64 runs start from the same
  values rounded up in precision);
- minibatches: one `torch.Generator().manual_seed(seed)`; each epoch takes
  `torch.randperm(n_train, generator=g)` and cuts it into consecutive slices of
  `batch_size`, dropping the last incomplete slice; steps run on across epochs. A run
  resumed after step t draws the same permutations and starts at slice t + 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from optimlab import models


def init_model(model_name: str, dataset: Any, seed: int, dtype: torch.dtype = torch.float32
               ) -> nn.Module:
    """The initial model of every run under `seed`: the same weights for every optimizer."""
    torch.manual_seed(seed)
    model = models.build(model_name, tuple(dataset.input_shape), int(dataset.num_classes))
    return model.to(dtype)


def batch_indices(n_train: int, batch_size: int, seed: int, start: int = 0
                  ) -> Iterator[torch.Tensor]:
    """Minibatch index tensors (int64, CPU), forever: step t uses the t-th slice yielded
    (`start`: the first `start` slices are skipped, as a run resumed after that step needs)."""
    if not 1 <= batch_size <= n_train:
        raise ValueError(f"Invalid batch_size: {batch_size}; allowed: 1 <= batch_size <= "
                         f"{n_train} (the number of training examples)")
    g = torch.Generator().manual_seed(seed)
    per_epoch = n_train // batch_size
    for _ in range(start // per_epoch):  # the generator's draws of the epochs skipped
        torch.randperm(n_train, generator=g)
    first = start % per_epoch
    while True:
        perm = torch.randperm(n_train, generator=g)
        for i in range(first, per_epoch):
            yield perm[i * batch_size:(i + 1) * batch_size]
        first = 0
