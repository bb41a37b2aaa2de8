"""SGD: w ← w − η g, with torch.optim.SGD's heavy-ball momentum as an option."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from optimlab.kernels.formula import Formula, Kw
from optimlab.optim._base import BaseOptimizer, Views, value
from optimlab.optim._formula import foreach, reference
from optimlab.optim._spec import NONNEG, Batched, Flag, OptimizerSpec, register


def sgd_element(w, g, v, *, lr, momentum, weight_decay, carry, damp, decay, heavy_ball,
                nesterov):
    """One element of SGD; the terms: carry = μ and damp = 1−τ, but 0 and 1 on the
    buffer's first step (v₁ = g, as torch)."""
    if decay:
        g = g + weight_decay * w                             # g ← g + λw
    if heavy_ball:
        v = carry * v + damp * g                             # v ← μv + (1−τ)g
        if nesterov:
            g = g + momentum * v                             # d = g + μv
        else:
            g = v                                            # d = v
    w = w - lr * g                                           # w ← w − η d
    return w, v


def _terms(kw: Kw, t: Any) -> dict[str, Any]:
    first = t == 1
    return dict(carry=0.0 if first else kw["momentum"],
                damp=1.0 if first else 1 - kw["dampening"])


FORMULA = Formula(
    name="sgd", element=sgd_element, states=("v",),
    scalars=lambda kw: dict(lr=kw["lr"], momentum=kw["momentum"],
                            weight_decay=kw["weight_decay"]),
    flags=lambda kw: dict(decay=kw["weight_decay"] != 0, heavy_ball=kw["momentum"] != 0,
                          nesterov=bool(kw["nesterov"])),
    terms=_terms, uses={"v": "heavy_ball"}, lazy=("v",),
    keys={"v": "momentum_buffer"})
sgd_reference = reference(FORMULA)
sgd_foreach = foreach(FORMULA)
_IMPLS = {"reference": sgd_reference, "foreach": sgd_foreach}


class SGD(BaseOptimizer):
    r"""Stochastic gradient descent, from the lecture: w ← w − η g.

    With ``momentum=μ > 0`` it is torch.optim.SGD's heavy-ball method, kept for
    parity with torch (for the lecture's EMA momentum use :class:`Momentum`)::

        g ← g + λw                      (weight_decay λ)
        v₁ = g;  v ← μv + (1−τ)g        (dampening τ; the first step skips it, as in torch)
        d = g + μv if nesterov else v
        w ← w − η d

    Defaults: lr=1e-3 (torch's), momentum=0, dampening=0, weight_decay=0.
    State (torch's name): ``momentum_buffer``. Identical to torch.optim.SGD, bfloat16 and
    float16 on CPU included (bit for bit).
    """

    _impls = _IMPLS
    _sparse = True  # sparse gradients run the reference path, as torch.optim.SGD's do

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 fused: bool | None = None, nonfinite: str = "apply"):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        foreach=foreach, fused=fused)
        super().__init__(params, defaults, nonfinite=nonfinite)

    def _validate(self, group: dict[str, Any]) -> None:
        if group["nesterov"] and (value(group["momentum"]) <= 0 or
                                  value(group["dampening"]) != 0):
            raise ValueError(
                f"Invalid nesterov=True with momentum={value(group['momentum'])} and "
                f"dampening={value(group['dampening'])}; allowed: momentum > 0, dampening = 0")

    def _needs_state(self, group: dict[str, Any]) -> bool:
        return value(group["momentum"]) != 0  # as torch.optim.SGD: no state without momentum

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        return {}

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(lr=value(group["lr"]), momentum=value(group["momentum"]),
                    dampening=value(group["dampening"]),
                    weight_decay=value(group["weight_decay"]), nesterov=bool(group["nesterov"]),
                    maximize=bool(group["maximize"]))

    def _update(self, group: dict[str, Any], fn: Callable[..., None], views: Views,
                params: list[torch.Tensor], grads: list[torch.Tensor],
                states: list[dict[str, Any]]) -> None:
        kw = self._kwargs(group)
        (bufs,) = [views(ts) for ts in self._lists(group, params, states, kw)]
        fn(views(params), views(grads), bufs, **kw)
        if value(group["momentum"]) != 0:  # the update made v₁ = g where a buffer was None
            for p, st, b in zip(params, states, bufs):
                st["momentum_buffer"] = torch.view_as_complex(b) if p.is_complex() else b


SPEC = register(OptimizerSpec(
    name="sgd", cls=SGD, lecture=True, formula=FORMULA,
    hyperparameters=dict(lr=NONNEG, momentum=NONNEG, dampening=NONNEG, weight_decay=NONNEG,
                         nesterov=Flag(), maximize=Flag()),
    batched=Batched(per_member=("lr", "momentum", "weight_decay")),
    peer=(torch.optim.SGD, dict(lr=1e-3)),
    search={"lr": (1e-3, 1.0)},  # η only: momentum would make it another method
))
