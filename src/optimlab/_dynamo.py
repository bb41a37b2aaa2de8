"""Building optimizers without importing torch._dynamo (≈1 s of CPU per process).

torch wraps `torch.optim.Optimizer.add_param_group` (and `zero_grad`, `state_dict`, …)
in `torch._disable_dynamo`, whose first call imports torch._dynamo so as to keep the
method out of `torch.compile`'s graphs. The lab builds optimizers that never step (the
class's own validation of an entry's hyperparameters, the batched update's check of each
member's): for those, the import is a third of a short sweep's start-up. While nothing has
imported torch._dynamo nothing can be compiling, so disabling it is a no-op:
`dynamo_not_imported` points the wrapper's own cache slot at the method itself for the
duration and empties it after, leaving torch as it was. Should torch change the wrapper,
the slot is ignored and the import happens as before (slower, never wrong).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Where `torch._disable_dynamo` caches a function's dynamo-disabled twin (torch/_compile.py).
SLOT = "__dynamo_disable"


@contextmanager
def dynamo_not_imported() -> Iterator[None]:
    """Optimizers built inside do not import torch._dynamo (see the module's docstring)."""
    import torch

    method = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
    if method is None or "torch._dynamo" in sys.modules or hasattr(method, SLOT):
        yield
        return
    setattr(method, SLOT, method)
    try:
        yield
    finally:
        if method.__dict__.get(SLOT) is method:
            delattr(method, SLOT)
