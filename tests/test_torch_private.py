"""torch's private API that optimlab relies on (`optimlab._dynamo`, the one module that uses
it): each name exists and behaves as relied upon. Checked on the torch versions in
CHECKED; on another version a failure here names what is gone and where it is used."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from optimlab import _dynamo
from optimlab.optim import OPTIMIZERS
from optimlab.optim._base import _GLOBAL_HOOKS

CHECKED = ("2.13.0",)


def _relied_upon(what: str) -> str:
    return (f"{what}, as optimlab/_dynamo.py relies on, on torch {torch.__version__}; "
            f"checked on torch {', '.join(CHECKED)}: adapt optimlab/_dynamo.py, then add this "
            "version to CHECKED")


def test_profiler_switch_is_torchs_own_and_follows_the_profiler():
    enabled = _dynamo.profiler_check()
    assert enabled is not _dynamo._always, _relied_upon(
        "torch._C._autograd._profiler_enabled is missing")
    assert enabled() is False, _relied_upon("the profiler reads as on with no profiler")
    with torch.profiler.profile():
        assert enabled() is True, _relied_upon("the profiler reads as off inside one")
    assert enabled() is False


@pytest.mark.parametrize("name", _dynamo.METHODS)
def test_wrapped_optimizer_methods_call_what_the_dynamo_slot_holds(name):
    wrapper = getattr(torch.optim.Optimizer, name)
    method = getattr(wrapper, "__wrapped__", None)
    assert method is not None, _relied_upon(f"torch.optim.Optimizer.{name} is not a wrapper")
    before = method.__dict__.get(_dynamo.SLOT)
    calls = []
    setattr(method, _dynamo.SLOT, lambda *args, **kwargs: calls.append((args, kwargs)))
    try:
        wrapper("optimizer", "argument", key="value")
    finally:
        if before is None:
            delattr(method, _dynamo.SLOT)
        else:
            setattr(method, _dynamo.SLOT, before)
    assert calls == [(("optimizer", "argument"), {"key": "value"})], _relied_upon(
        f"torch.optim.Optimizer.{name}'s wrapper does not call its {_dynamo.SLOT!r} slot")


def test_global_step_hooks_registered_later_are_seen_and_run_on_our_step():
    """The registries come from the public registration (no private name): a hook
    registered after optimlab's import lands in them, so the step takes torch's wrapper."""
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    opt = OPTIMIZERS["sgd"]([p], lr=0.5)
    calls = []
    handles = [register_optimizer_step_pre_hook(lambda o, a, k: calls.append("pre")),
               register_optimizer_step_post_hook(lambda o, a, k: calls.append("post"))]
    try:
        assert all(_GLOBAL_HOOKS)
        opt.step()
    finally:
        for h in handles:
            h.remove()
    assert calls == ["pre", "post"] and not any(_GLOBAL_HOOKS)
    opt.step()
    assert calls == ["pre", "post"] and p.tolist() == [-1.0, -1.0]
