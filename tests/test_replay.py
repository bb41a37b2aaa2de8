"""The fused step's replay (`optimlab.optim._replay`) against the reference path.

Between two steps, a training loop, a scheduler or a user may change anything the last
step settled: η, the gradients' tensors, the options, the parameters' or the states'
memory, the param groups, the non-finite policy. Each case here runs the default
(fused) path and the reference path (`foreach=False`) of one optimizer side by side in
float64 on the same gradients, with the same change made to both between steps, and
holds every parameter to the reference after every step; it also counts the steps that
replayed, so that the cases test the replay and not only the full step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch

from optimlab.optim import OPTIMIZERS
from optimlab.optim._base import BaseOptimizer

SHAPES = [(6, 5), (5,), (3, 4, 2), (7,)]
STEPS = 50
# float64: the fused kernels differ from the reference only in rounding order
RTOL, ATOL = 1e-9, 1e-12

# optimizer, its options, and an option change that needs other state tensors (or other
# arguments) from then on
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("sgd", dict(lr=0.05), dict(momentum=0.9)),
    ("sgd", dict(lr=0.02, momentum=0.9, dampening=0.5, weight_decay=0.05), dict(nesterov=False,
                                                                                 dampening=0.0)),
    ("momentum", dict(lr=0.05, momentum=0.9), dict(nesterov=True)),
    ("rmsprop", dict(lr=1e-2), dict(centered=True, momentum=0.5)),
    ("adam", dict(lr=1e-2), dict(amsgrad=True)),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.99), bias_correction=False), dict(betas=(0.9, 0.999))),
    ("adamw", dict(lr=1e-2, weight_decay=0.3, amsgrad=True), dict(weight_decay=0.1)),
    ("adagrad", dict(lr=0.1, lr_decay=0.01), dict(weight_decay=0.05, maximize=True)),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]


def gradients(params: list[torch.Tensor], t: int) -> list[torch.Tensor]:
    """A bowl whose minimum moves: g = 0.5 w + 0.2 sin(w) + 0.1 cos(0.3 t + i)."""
    return [0.5 * p + 0.2 * torch.sin(p) + 0.1 * torch.cos(torch.tensor(0.3 * t + i))
            for i, p in enumerate(params)]


Change = Callable[[BaseOptimizer, list[torch.Tensor], dict[str, Any]], None]


def _scheduler(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    for group in opt.param_groups:
        group["lr"] = group["lr"] * 0.9  # a new float each step, as LR schedulers assign


def _reload(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))


def _moved_parameter(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    params[0].data = params[0].data.clone()  # the same tensor at another address


def _moved_state(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    for st in opt.state.values():  # the same state tensors at other addresses
        for key, x in st.items():
            if key != "step" and isinstance(x, torch.Tensor):
                x.data = x.data.clone()


def _replaced_state(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    for st in opt.state.values():  # other state tensors, equal values
        for key, x in list(st.items()):
            if isinstance(x, torch.Tensor):
                st[key] = x.clone()


def _reset_state(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    """What some pruning code does: forget one parameter's state, start it afresh."""
    opt.state[params[2]] = {}


def _dropped_state(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    opt.state.pop(params[3], None)  # the next step starts it afresh


def _deleted_state(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    del opt.state[params[0]]


def _cleared_states(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    opt.state.clear()  # every parameter starts afresh


def _emptied_state(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    opt.state[params[1]].clear()


def _option(opt: BaseOptimizer, params: list[torch.Tensor], change: dict[str, Any]) -> None:
    for group in opt.param_groups:
        group.update(change)


def _unfused_once(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    for group in opt.param_groups:
        if group["fused"] is None and group["foreach"] is None:
            group["foreach"] = True  # one step on foreach (set back by `_fused_again`)


def _fused_again(opt: BaseOptimizer, params: list[torch.Tensor], _: dict[str, Any]) -> None:
    for group in opt.param_groups:
        if group["foreach"] is True and opt.defaults["foreach"] is None:
            group["foreach"] = None


# step -> change made to both optimizers before that step's gradients; two steps apart,
# so that the step before each change replayed (a change that the replay must refuse
# makes the next step a full one)
CHANGES: dict[int, Change] = {
    4: _scheduler, 5: _scheduler, 6: _reload, 9: _moved_parameter, 12: _dropped_state,
    15: _reset_state, 18: _moved_state, 21: _replaced_state, 24: _option, 27: _emptied_state,
    30: _unfused_once, 31: _fused_again, 34: _deleted_state, 37: _cleared_states,
}
NO_GRAD_STEP, NONCONTIGUOUS_STEP, NAN_STEP, NEW_GROUP_STEP = 40, 42, 44, 46


def _run(name: str, kw: dict[str, Any], change: dict[str, Any], impl: dict[str, Any]
         ) -> tuple[list[torch.Tensor], int]:
    """STEPS steps of the scripted run; the parameters and how many steps replayed."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, dtype=torch.float64, generator=gen) for s in SHAPES]
    extra = torch.randn(9, dtype=torch.float64, generator=gen)
    opt = OPTIMIZERS[name](params, **kw, **impl)
    full_steps = 0
    full_step = opt._step_no_grad

    def counted(closure: Any) -> Any:
        nonlocal full_steps
        full_steps += 1
        return full_step(closure)

    opt._step_no_grad = counted  # type: ignore[method-assign]
    for t in range(STEPS):
        if t in CHANGES:
            CHANGES[t](opt, params, change)
        if t == NEW_GROUP_STEP:
            opt.add_param_group({"params": [extra]})
        every = params + ([extra] if t >= NEW_GROUP_STEP else [])
        for i, (p, g) in enumerate(zip(every, gradients(every, t))):
            if t == NO_GRAD_STEP and i == 1:
                p.grad = None  # this step leaves parameter 1 alone
            elif t == NONCONTIGUOUS_STEP and g.dim() == 2:
                p.grad = g.t().contiguous().t()  # same values, column-major
            elif t == NAN_STEP and i == 0:
                p.grad = torch.full_like(g, float("nan"))
            elif t % 2 and p.grad is not None:
                p.grad.copy_(g)  # in place, as after zero_grad(set_to_none=False)
            else:
                p.grad = g  # a new tensor, as after zero_grad(set_to_none=True)
        opt.nonfinite = "skip" if t == NAN_STEP else "apply"
        opt.step()
    return params + [extra], STEPS - full_steps  # a step that is not full replayed


@pytest.mark.parametrize(("name", "kw", "change"), CASES, ids=IDS)
def test_replayed_steps_equal_the_reference_through_every_change(
        name: str, kw: dict[str, Any], change: dict[str, Any]) -> None:
    ours, replays = _run(name, kw, change, {})
    reference, none = _run(name, kw, change, dict(foreach=False))
    assert none == 0  # the reference path never replays
    # the steps between the changes that the replay must refuse (and after the first)
    assert replays >= STEPS // 2, replays
    for p, q in zip(ours, reference, strict=True):
        torch.testing.assert_close(p, q, rtol=RTOL, atol=ATOL)


Between = Callable[[BaseOptimizer, int], None]


def _beside_the_reference(name: str, kw: Callable[[], dict[str, Any]], between: Between) -> None:
    """8 steps of the default path and of the reference, `between(opt, t)` after step t;
    `kw()` makes each run's own options (a tensor in them may be changed in place)."""
    runs = []
    for impl in ({}, dict(foreach=False)):
        gen = torch.Generator().manual_seed(1)
        params = [torch.randn(s, dtype=torch.float64, generator=gen) for s in SHAPES]
        opt = OPTIMIZERS[name](params, **kw(), **impl)
        for t in range(8):
            for p, g in zip(params, gradients(params, t)):
                p.grad = g
            opt.step()
            between(opt, t)
        runs.append(params)
    for p, q in zip(*runs, strict=True):
        torch.testing.assert_close(p, q, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_tensor_hyperparameters_changed_in_place_are_read_every_step(name: str) -> None:
    """A tensor η (or β) that a scheduler changes with `fill_` keeps its identity."""
    def kw() -> dict[str, Any]:
        if name == "adam":
            return dict(lr=torch.tensor(0.05), betas=(torch.tensor(0.9), torch.tensor(0.99)))
        return dict(lr=torch.tensor(0.05))

    def between(opt: BaseOptimizer, t: int) -> None:
        opt.param_groups[0]["lr"].fill_(0.05 / (t + 2))
        if name == "adam":
            opt.param_groups[0]["betas"][0].fill_(0.9 - 0.05 * t)

    _beside_the_reference(name, kw, between)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_float_lr_replaced_by_a_tensor_is_read_every_step_after(name: str) -> None:
    """A scheduler that swaps a float η for a tensor, then changes it with `fill_`."""
    def between(opt: BaseOptimizer, t: int) -> None:
        if t == 2:
            opt.param_groups[0]["lr"] = torch.tensor(0.05)
        elif t > 2:
            opt.param_groups[0]["lr"].fill_(0.01 * t)

    _beside_the_reference(name, lambda: dict(lr=0.1), between)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_replayed_step_refuses_what_the_full_step_refuses(name: str) -> None:
    """A sparse gradient or a tensor subclass after replayed steps gets the full step's
    answer (the reference path for SGD's sparse gradients; an error for Adam's)."""
    emb = torch.nn.Embedding(10, 3, sparse=True).double()
    opt = OPTIMIZERS[name](emb.parameters(), lr=0.1)
    for _ in range(3):
        emb.weight.grad = torch.ones_like(emb.weight)
        opt.step()
    emb.weight.grad = None
    emb(torch.tensor([1, 2])).sum().backward()  # a sparse gradient
    before = emb.weight.detach().clone()
    if name == "sgd":
        opt.step()
        assert opt.last_impl == ["reference"]
        changed = (emb.weight.detach() != before).any(dim=1)
        assert changed.tolist() == [i in (1, 2) for i in range(10)]
    else:
        with pytest.raises(TypeError, match="sparse"):
            opt.step()
