"""SGD: w ← w − η g, with torch.optim.SGD's heavy-ball momentum as an option."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from optimlab.optim._base import BaseOptimizer, Views, gradient, gradients, scale_, value
from optimlab.optim._spec import NONNEG, Batched, Flag, OptimizerSpec, register
from optimlab.optim.batched import Tensors, decayed, per_member


def sgd_reference(params: list[torch.Tensor], grads: list[torch.Tensor],
                  bufs: list[torch.Tensor | None], *, lr: float, momentum: float,
                  dampening: float, weight_decay: float, nesterov: bool,
                  maximize: bool) -> None:
    """One tensor at a time, the formula line by line. `bufs[i] is None` on the first step."""
    for i, (w, g) in enumerate(zip(params, grads)):
        g = gradient(w, g, maximize=maximize, weight_decay=weight_decay)  # g ← g + λw
        if momentum != 0:
            buf = bufs[i]
            if buf is None:
                buf = bufs[i] = g.clone()                   # v₁ = g (torch's first step)
            else:
                buf.mul_(momentum).add_(g, alpha=1 - dampening)  # v ← μv + (1−τ)g
            g = g.add(buf, alpha=momentum) if nesterov else buf
        w.add_(g, alpha=-lr)                                # w ← w − η g


def sgd_foreach(params: list[torch.Tensor], grads: list[torch.Tensor],
                bufs: list[torch.Tensor | None], *, lr: float, momentum: float,
                dampening: float, weight_decay: float, nesterov: bool,
                maximize: bool) -> None:
    """The same update with torch's multi-tensor ops."""
    grads = gradients(params, grads, maximize=maximize, weight_decay=weight_decay)
    if momentum != 0:
        old = [(b, g) for b, g in zip(bufs, grads) if b is not None]
        if old:
            scale_([b for b, _ in old], momentum)
            torch._foreach_add_([b for b, _ in old], [g for _, g in old], alpha=1 - dampening)
        for i, b in enumerate(bufs):
            if b is None:
                bufs[i] = grads[i].clone()  # v₁ = g
        full = [b for b in bufs if b is not None]
        grads = list(torch._foreach_add(grads, full, alpha=momentum)) if nesterov else full
    torch._foreach_add_(params, grads, alpha=-lr)


def sgd_batched_states(params: Tensors, state: dict[str, Any], **shared: Any) -> list[Tensors]:
    """The batched state as the fused kernel's lists: the heavy-ball buffers, made at step 1
    (v₁ = g)."""
    return [state.setdefault("bufs", [None] * len(params))]


def sgd_batched(params: Tensors, grads: Tensors, state: dict[str, Any], t: int, tmp: Tensors,
                *, lr: torch.Tensor, momentum: torch.Tensor | None,
                weight_decay: torch.Tensor | None) -> None:
    """K members at once (see `Batched`): w ← w − η g; with momentum (heavy ball, v₁ = g):
    v ← μv + g, w ← w − η v. A member with μ = 0 in a batch with momentum gets v = g."""
    (bufs,) = sgd_batched_states(params, state)
    for i, (w, g) in enumerate(zip(params, grads, strict=True)):
        g = decayed(w, g, weight_decay)
        if momentum is not None:
            buf = bufs[i]
            if buf is None:
                buf = bufs[i] = torch.empty_like(w).copy_(g)  # v₁ = g (laid out as w)
            else:
                buf.mul_(per_member(momentum, buf)).add_(g)  # v ← μv + g
            g = buf
        w.addcmul_(g, per_member(-lr, w))                   # w ← w − η g


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

    def _lists(self, group: dict[str, Any], params: list[torch.Tensor],
               states: list[dict[str, Any]]) -> list[list[Any]]:
        if value(group["momentum"]) == 0:
            return [[None] * len(params)]
        return [[st.get("momentum_buffer") for st in states]]

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(lr=value(group["lr"]), momentum=value(group["momentum"]),
                    dampening=value(group["dampening"]),
                    weight_decay=value(group["weight_decay"]), nesterov=bool(group["nesterov"]),
                    maximize=bool(group["maximize"]))

    def _update(self, group: dict[str, Any], fn: Callable[..., None], views: Views,
                params: list[torch.Tensor], grads: list[torch.Tensor],
                states: list[dict[str, Any]]) -> None:
        (bufs,) = [views(ts) for ts in self._lists(group, params, states)]
        fn(views(params), views(grads), bufs, **self._kwargs(group))
        if value(group["momentum"]) != 0:  # the update made v₁ = g where a buffer was None
            for p, st, b in zip(params, states, bufs):
                st["momentum_buffer"] = torch.view_as_complex(b) if p.is_complex() else b


SPEC = register(OptimizerSpec(
    name="sgd", cls=SGD, lecture=True, kernel="sgd",
    hyperparameters=dict(lr=NONNEG, momentum=NONNEG, dampening=NONNEG, weight_decay=NONNEG,
                         nesterov=Flag(), maximize=Flag()),
    batched=Batched(sgd_batched, sgd_batched_states, per_member=("lr", "momentum", "weight_decay"),
                    optional=("momentum", "weight_decay")),
    peer=(torch.optim.SGD, dict(lr=1e-3)),
    search={"lr": (1e-3, 1.0)},  # η only: momentum would make it another method
))
