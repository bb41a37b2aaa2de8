"""A fused step replayed: the last full step's prepared kernel calls, run again.

At the lab's model sizes a step is fixed cost: what the full step works out again every
time (which parameters have a gradient, whether one is sparse, the implementation, the
layout, the state tensors' checks, the keyword arguments) costs more than the update.
When every param group took the fused path with every parameter, the full step keeps
each group's call (`Kept`), and the next steps run it again (`replay`) after checking,
as the full step would, what can change between steps: the group and its tensors by
identity, the flags that choose the path, the non-finite and GradScaler settings, every
gradient present, plain and contiguous, the layout's and the state tensors' addresses
and contiguity, and the hyperparameters (by identity: a scheduler's new η makes new
arguments). Everything here is torch's public API and the optimizer's own methods.
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from optimlab.kernels._checks import holds

if TYPE_CHECKING:
    from optimlab.optim._base import BaseOptimizer


class StateMap(collections.defaultdict):  # type: ignore[type-arg]
    """`Optimizer.state` (a defaultdict(dict), as torch's), counting in `version` every
    change of which dict a parameter maps to, so that a replayed step may keep the dicts
    it found last step while the count stands (`update`, `|=`, `pop`, … included: the
    dict's own C methods do not go through `__setitem__`)."""

    version = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.version += 1
        super().__delitem__(key)

    def __ior__(self, other: Any) -> Any:  # type: ignore[misc]
        self.version += 1
        return super().__ior__(other)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        super().update(*args, **kwargs)

    def pop(self, *args: Any) -> Any:
        self.version += 1
        return super().pop(*args)

    def popitem(self) -> Any:
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        self.version += 1
        super().clear()


class Kept:
    """A group's fused step as the last full step settled it."""

    __slots__ = ("group", "layout", "prepare", "keys", "call", "snapshot", "lr", "kw",
                 "tensors", "states", "version")

    def __init__(self, group: dict[str, Any], layout: Any, prepare: Callable[..., Any],
                 hyperparameters: Iterable[str]):
        self.group, self.layout, self.prepare = group, layout, prepare
        self.keys = tuple(key for key in hyperparameters if key != "lr")  # η on its own
        self.call: Any = None  # the backend's prepared call, made on the first replay
        # the group's hyperparameters but η, and η, when `kw` was made
        self.snapshot: list[Any] = []
        self.lr: Any = None
        self.kw: dict[str, Any] = {}
        self.tensors = False  # whether a hyperparameter is a tensor
        # the group's state dicts last step, and the optimizer's state map's version then
        self.states: list[dict[str, Any]] | None = None
        self.version = -1

    def arguments(self, opt: BaseOptimizer, group: dict[str, Any]) -> tuple[bool, bool]:
        """Brings `kw` up to the group's hyperparameters: whether they are the same objects
        as last step, and whether η alone changed (a scheduler's, as a rule every step)."""
        snapshot, lr = [*map(group.__getitem__, self.keys)], group["lr"]
        if (len(snapshot) == len(self.snapshot) and not self.tensors
                and all(map(operator.is_, snapshot, self.snapshot))):
            if lr is self.lr:
                return True, False
            if not isinstance(lr, torch.Tensor):  # a tensor η may change in place later
                self.lr, self.kw = lr, {**self.kw, "lr": float(lr)}
                return True, True
        self.snapshot, self.lr, self.kw = snapshot, lr, opt._kwargs(group)
        # a tensor may change in place (a scheduler's `fill_`): read them every step
        self.tensors = _holds_tensor([*snapshot, lr])
        return False, False

    def state_dicts(self, opt: BaseOptimizer, params: list[torch.Tensor]
                    ) -> list[dict[str, Any]] | None:
        """The group's state dicts (those of last step while the state map's count stands);
        None where one was emptied in place: the full step fills it again."""
        state = opt.state
        if self.states is not None and isinstance(state, StateMap) \
                and state.version == self.version:
            return self.states if all(self.states) else None
        group = self.group
        self.states = opt._states(params) if opt._needs_state(group) else []
        self.version = state.version if isinstance(state, StateMap) else -1
        return self.states


def replay(opt: BaseOptimizer, kept: list[Kept]) -> bool:
    """`opt`'s step, when every group is as the last full step left it (False, having
    changed nothing, when one is not: then the full step runs)."""
    groups, attributes = opt.param_groups, opt.__dict__
    if (len(kept) != len(groups) or opt.nonfinite != "apply"
            or attributes.get("found_inf") is not None
            or attributes.get("grad_scale") is not None):
        return False
    ready = []
    for k, group in zip(kept, groups):
        found = _ready(opt, k, group)
        if found is None:
            return False
        ready.append((k, *found))
    for k, grads, states, only_lr in ready:
        steps = opt._advance(k.group, states) if opt._counts else None
        k.call.run(grads, steps if opt._takes_steps else None, k.kw, only_lr)
    return True


def _ready(opt: BaseOptimizer, k: Kept, group: dict[str, Any]
           ) -> tuple[list[torch.Tensor], list[dict[str, Any]], bool] | None:
    """The group's gradients, state dicts and whether η alone changed, when its kept call
    still holds (else None)."""
    params = group["params"]
    if (k.group is not group or group["fused"] is False or group["foreach"]
            or not isinstance(params, list)):
        return None
    grads = [p.grad for p in params]
    if not holds(k.layout, params, grads):
        return None
    same, only_lr = k.arguments(opt, group)
    if k.call is not None and not k.call.tensors and not opt._counts:
        # a call without state tensors: it holds while it would not need state now
        return (grads, [], only_lr) if same or k.call.holds([], k.kw, only_lr) else None
    states = k.state_dicts(opt, params)
    if states is None:
        return None
    lists = opt._lists(group, params, states, k.kw)
    if k.call is None:
        k.call = k.prepare(opt.spec.kernel, params, lists, k.kw, k.layout)
        if k.call is None:
            return None
    elif not k.call.holds(lists, k.kw, only_lr):
        return None
    return grads, states, only_lr


def _holds_tensor(values: Iterable[Any]) -> bool:
    return any(isinstance(x, torch.Tensor) or (isinstance(x, tuple) and _holds_tensor(x))
               for x in values)
