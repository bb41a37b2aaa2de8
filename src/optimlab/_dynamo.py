"""torch's private API that optimlab relies on, all of it here (checked on the torch
versions that `tests/test_torch_private.py` names; where a name is gone, each use falls
back to torch's public way: slower, never wrong).

**The profiler's switch** (`profiler_check`). torch.optim wraps every optimizer's step to
run the step hooks and label the step for torch's profiler; at the lab's model sizes the
label alone (`torch.autograd.profiler.record_function`) costs about as much as our step
(docs/performance.md).
So our step takes the wrapper only when it has something to do: a hook registered (found
through torch's public registration) or the profiler on, which only torch's private
`torch._C._autograd._profiler_enabled` tells.

**Building optimizers without importing torch._dynamo** (a fixed cost of every process).
torch wraps `torch.optim.Optimizer.add_param_group` (and `zero_grad`, `state_dict`, …)
in `torch._disable_dynamo`, whose first call imports torch._dynamo so as to keep the
method out of `torch.compile`'s graphs. The lab builds optimizers that never step (the
class's own validation of an entry's hyperparameters, the batched update's check of each
member's): for those, the import is a large share of a short sweep's start-up
(docs/performance.md, 'Fixed costs'). While nothing has imported torch._dynamo nothing
can be compiling, so disabling it is a no-op: `dynamo_not_imported` points the wrapper's
own cache slot at the method itself for the duration and empties it after, leaving torch
as it was. Should torch change the wrapper, the slot is ignored and the import happens as
before (slower, never wrong).

An `optimlab` command owns its process, and `compare` trains with real optimizers, whose
first `zero_grad` would import it too: `eager_until_dynamo` (called by the CLI only) has
each wrapped method call itself directly while torch._dynamo is not imported, and hands
over to torch's wrapper for good on the first call after something (a user's model
calling `torch.compile`) has imported it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# Where `torch._disable_dynamo` caches a function's dynamo-disabled twin (torch/_compile.py).
SLOT = "__dynamo_disable"
# torch.optim.Optimizer's methods that torch wraps in `torch._disable_dynamo`.
METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def profiler_check() -> Callable[[], bool]:
    """A function telling whether torch's profiler records now (see the module's
    docstring); where this torch lacks the private switch, one that always says yes."""
    import torch

    autograd = getattr(torch._C, "_autograd", None)
    enabled: Callable[[], bool] | None = getattr(autograd, "_profiler_enabled", None)
    return enabled if enabled is not None else _always


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


def eager_until_dynamo() -> None:
    """For this whole process: torch.optim.Optimizer's wrapped methods run themselves
    while torch._dynamo is not imported, torch's wrapper after (see the module's docstring).
    Only for a process that is an optimlab command; imports nothing (no torch: nothing)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    for name in METHODS:
        wrapper = getattr(torch.optim.Optimizer, name)
        method = getattr(wrapper, "__wrapped__", None)
        if method is not None and not hasattr(method, SLOT):
            setattr(method, SLOT, _until_dynamo(wrapper, method))


def _until_dynamo(wrapper: Callable[..., Any], method: Callable[..., Any]
                  ) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" in sys.modules:  # something may compile from now on
            if method.__dict__.get(SLOT) is call:
                delattr(method, SLOT)  # torch's wrapper makes its dynamo-disabled twin
            return wrapper(*args, **kwargs)
        return method(*args, **kwargs)
    return call


def _always() -> bool:
    return True
