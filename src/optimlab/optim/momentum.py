"""Momentum, the lecture's exponential-moving-average form."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.kernels.formula import Formula
from optimlab.optim._base import BaseOptimizer, value
from optimlab.optim._formula import foreach, reference
from optimlab.optim._spec import NONNEG, UNIT, Batched, Flag, OptimizerSpec, register


def momentum_element(w, g, v, *, lr, beta, rest, weight_decay, decay, nesterov):
    """One element of Momentum (β = momentum, rest = 1−β)."""
    if decay:
        g = g + weight_decay * w                             # g ← g + λw
    v = beta * v + rest * g                                  # v ← βv + (1−β)g
    if nesterov:
        w = w - lr * (beta * v + rest * g)                   # w ← w − η (βv + (1−β)g)
    else:
        w = w - lr * v                                       # w ← w − η v
    return w, v


FORMULA = Formula(
    name="momentum", element=momentum_element, states=("v",),
    scalars=lambda kw: dict(lr=kw["lr"], beta=kw["momentum"], rest=1 - kw["momentum"],
                            weight_decay=kw["weight_decay"]),
    flags=lambda kw: dict(decay=kw["weight_decay"] != 0, nesterov=bool(kw["nesterov"])),
    keys={"v": "momentum_buffer"})
momentum_reference = reference(FORMULA)
momentum_foreach = foreach(FORMULA)
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

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(lr=value(group["lr"]), momentum=value(group["momentum"]),
                    weight_decay=value(group["weight_decay"]), nesterov=bool(group["nesterov"]),
                    maximize=bool(group["maximize"]))


SPEC = register(OptimizerSpec(
    name="momentum", cls=Momentum, lecture=True, formula=FORMULA,
    hyperparameters=dict(lr=NONNEG, momentum=UNIT, weight_decay=NONNEG, nesterov=Flag(),
                         maximize=Flag()),
    batched=Batched(per_member=("lr", "momentum", "weight_decay")),
    # the same bytes per step as ours: torch's heavy ball keeps one buffer too
    peer=(torch.optim.SGD, dict(lr=1e-3, momentum=0.9)),
    search={"lr": (1e-3, 1.0), "momentum": (0.0, 0.999)},
))
