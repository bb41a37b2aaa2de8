"""Momentum, the lecture's exponential-moving-average form."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.optim._base import BaseOptimizer, gradient, gradients, scale_, value
from optimlab.optim._spec import NONNEG, UNIT, Batched, Flag, OptimizerSpec, register
from optimlab.optim.batched import Tensors, decayed, per_member, zeros


def average_(v: torch.Tensor, g: torch.Tensor, beta: float) -> torch.Tensor:
    """v ← βv + (1−β)g, in place: the moving average of the gradient (the lecture's
    momentum; RMSprop's centered mean and Adam's first moment too)."""
    return v.mul_(beta).add_(g, alpha=1 - beta)


def momentum_reference(params: list[torch.Tensor], grads: list[torch.Tensor],
                       vs: list[torch.Tensor], *, lr: float, momentum: float,
                       weight_decay: float, nesterov: bool, maximize: bool) -> None:
    """One tensor at a time, the formula line by line."""
    for w, g, v in zip(params, grads, vs):
        g = gradient(w, g, maximize=maximize, weight_decay=weight_decay)  # g ← g + λw
        average_(v, g, momentum)                           # v ← βv + (1−β)g
        if nesterov:
            d = v.mul(momentum).add_(g, alpha=1 - momentum)  # d = βv + (1−β)g
            w.add_(d, alpha=-lr)
        else:
            w.add_(v, alpha=-lr)                           # w ← w − η v


def momentum_foreach(params: list[torch.Tensor], grads: list[torch.Tensor],
                     vs: list[torch.Tensor], *, lr: float, momentum: float,
                     weight_decay: float, nesterov: bool, maximize: bool) -> None:
    """The same update with torch's multi-tensor ops."""
    grads = gradients(params, grads, maximize=maximize, weight_decay=weight_decay)
    scale_(vs, momentum)
    torch._foreach_add_(vs, grads, alpha=1 - momentum)
    if nesterov:
        d = torch._foreach_mul(vs, momentum)
        torch._foreach_add_(d, grads, alpha=1 - momentum)
        torch._foreach_add_(params, d, alpha=-lr)
    else:
        torch._foreach_add_(params, vs, alpha=-lr)


def momentum_batched_states(params: Tensors, state: dict[str, Any],
                            **shared: Any) -> list[Tensors]:
    """The batched state as the fused kernel's lists: v, zero at first."""
    return [zeros(state, "vs", params)]


def momentum_batched(params: Tensors, grads: Tensors, state: dict[str, Any], t: int,
                     tmp: Tensors, *, lr: torch.Tensor, momentum: torch.Tensor,
                     weight_decay: torch.Tensor | None) -> None:
    """K members at once (see `Batched`): v ← βv + (1−β)g, w ← w − η v."""
    (vs,) = momentum_batched_states(params, state)
    for w, g, v in zip(params, grads, vs, strict=True):
        g = decayed(w, g, weight_decay)
        v.mul_(per_member(momentum, v)).addcmul_(g, per_member(1 - momentum, v))  # v ← βv + (1−β)g
        w.addcmul_(v, per_member(-lr, w))                   # w ← w − η v


_IMPLS = {"reference": momentum_reference, "foreach": momentum_foreach}


class Momentum(BaseOptimizer):
    r"""Gradient descent with momentum as an exponential moving average (the lecture's form)::

        g ← g + λw                      (weight_decay λ, L2 as in torch)
        v ← βv + (1−β)g,   v₀ = 0       (β = momentum)
        w ← w − η v                     (nesterov: w ← w − η (βv + (1−β)g))

    Defaults: lr=1e-3, momentum=0.9 (the lecture's β), weight_decay=0.

    How it differs from torch.optim.SGD(momentum=μ): torch uses heavy ball
    ``v ← μv + g`` with v₁ = g. The EMA form averages instead of summing, so
    its steady-state step is η·g rather than η·g/(1−μ): to match torch's
    trajectory scale, multiply η by 1/(1−β). β=0 gives plain SGD.
    The β lives under torch's key ``momentum`` so LR schedulers that cycle it
    (OneCycleLR) work; state (torch's name): ``momentum_buffer``.
    """

    _impls = _IMPLS

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, fused: bool | None = None,
                 nonfinite: str = "apply"):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, fused=fused)
        super().__init__(params, defaults, nonfinite=nonfinite)

    def _validate(self, group: dict[str, Any]) -> None:
        if group["nesterov"] and value(group["momentum"]) <= 0:
            raise ValueError(f"Invalid nesterov=True with momentum={value(group['momentum'])}; "
                             "allowed: momentum > 0")

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _lists(self, group: dict[str, Any], params: list[torch.Tensor],
               states: list[dict[str, Any]]) -> list[list[Any]]:
        return [[st["momentum_buffer"] for st in states]]

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(lr=value(group["lr"]), momentum=value(group["momentum"]),
                    weight_decay=value(group["weight_decay"]), nesterov=bool(group["nesterov"]),
                    maximize=bool(group["maximize"]))


SPEC = register(OptimizerSpec(
    name="momentum", cls=Momentum, lecture=True, kernel="momentum",
    hyperparameters=dict(lr=NONNEG, momentum=UNIT, weight_decay=NONNEG, nesterov=Flag(),
                         maximize=Flag()),
    batched=Batched(momentum_batched, momentum_batched_states,
                    per_member=("lr", "momentum", "weight_decay")),
    # the same bytes per step as ours: torch's heavy ball keeps one buffer too
    peer=(torch.optim.SGD, dict(lr=1e-3, momentum=0.9)),
    search={"lr": (1e-3, 1.0), "momentum": (0.0, 0.999)},
))
