"""RMSprop: a per-parameter step size from a moving average of squared gradients."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.optim._base import BaseOptimizer, gradient, gradients, scale_, value
from optimlab.optim._spec import NONNEG, UNIT, Batched, Flag, OptimizerSpec, register
from optimlab.optim.batched import Tensors, decayed, per_member, zeros
from optimlab.optim.momentum import average_


def average_squares_(s: torch.Tensor, g: torch.Tensor, beta: float) -> torch.Tensor:
    """s ← βs + (1−β)g², in place: the moving average of the squared gradient (RMSprop's;
    Adam's second moment)."""
    return s.mul_(beta).addcmul_(g, g, value=1 - beta)


def centered_root(s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """√max(s − m², 0): the centered RMS. s ≥ m² in exact arithmetic (a variance); rounding
    can make s − m² slightly negative where s ≈ m², and the clamp keeps the root real
    (torch.optim.RMSprop gives NaN there). Every path that needs it calls this one."""
    return s.addcmul(m, m, value=-1).clamp_min_(0).sqrt_()


def rmsprop_reference(params: list[torch.Tensor], grads: list[torch.Tensor],
                      ss: list[torch.Tensor], gs: list[torch.Tensor | None],
                      bufs: list[torch.Tensor | None], *, lr: float, alpha: float, eps: float,
                      weight_decay: float, momentum: float, centered: bool,
                      maximize: bool) -> None:
    """One tensor at a time, the formula line by line.

    `gs` (the mean gradient) is used only when centered, `bufs` only when momentum > 0.
    """
    for w, g, s, m, buf in zip(params, grads, ss, gs, bufs):
        g = gradient(w, g, maximize=maximize, weight_decay=weight_decay)  # g ← g + λw
        average_squares_(s, g, alpha)                        # s ← βs + (1−β)g²
        if centered:
            assert m is not None
            average_(m, g, alpha)                            # m ← βm + (1−β)g
            denom = centered_root(s, m).add_(eps)            # √max(s − m², 0) + ε
        else:
            denom = s.sqrt().add_(eps)                       # √s + ε
        if momentum > 0:
            assert buf is not None
            buf.mul_(momentum).addcdiv_(g, denom)            # b ← μb + g/(√s+ε)
            w.add_(buf, alpha=-lr)
        else:
            w.addcdiv_(g, denom, value=-lr)                  # w ← w − η g/(√s+ε)


def rmsprop_foreach(params: list[torch.Tensor], grads: list[torch.Tensor],
                    ss: list[torch.Tensor], gs: list[torch.Tensor | None],
                    bufs: list[torch.Tensor | None], *, lr: float, alpha: float, eps: float,
                    weight_decay: float, momentum: float, centered: bool,
                    maximize: bool) -> None:
    """The same update with torch's multi-tensor ops."""
    grads = gradients(params, grads, maximize=maximize, weight_decay=weight_decay)
    scale_(ss, alpha)
    torch._foreach_addcmul_(ss, grads, grads, value=1 - alpha)
    if centered:
        ms = [m for m in gs if m is not None]
        scale_(ms, alpha)
        torch._foreach_add_(ms, grads, alpha=1 - alpha)
        denom = torch._foreach_addcmul(ss, ms, ms, value=-1)
        torch._foreach_clamp_min_(denom, 0.0)
        torch._foreach_sqrt_(denom)
    else:
        denom = torch._foreach_sqrt(ss)
    torch._foreach_add_(denom, eps)
    if momentum > 0:
        bs = [b for b in bufs if b is not None]
        scale_(bs, momentum)
        torch._foreach_addcdiv_(bs, grads, denom)
        torch._foreach_add_(params, bs, alpha=-lr)
    else:
        torch._foreach_addcdiv_(params, grads, denom, value=-lr)


def rmsprop_batched_states(params: Tensors, state: dict[str, Any], *, centered: bool,
                           **shared: Any) -> list[list[Any]]:
    """The batched state as the fused kernel's lists: s, m (centered), zero at first; no
    momentum buffers (the batched update has no momentum)."""
    return [zeros(state, "ss", params), zeros(state, "ms", params) if centered
            else [None] * len(params), [None] * len(params)]


def rmsprop_batched(params: Tensors, grads: Tensors, state: dict[str, Any], t: int,
                    tmp: Tensors, *, lr: torch.Tensor, alpha: torch.Tensor, eps: torch.Tensor,
                    weight_decay: torch.Tensor | None, centered: bool) -> None:
    """K members at once (see `Batched`): s ← βs + (1−β)g², w ← w − η g/(√s + ε)."""
    ss, ms, _ = rmsprop_batched_states(params, state, centered=centered)
    for i, (w, g, s) in enumerate(zip(params, grads, ss, strict=True)):
        g = decayed(w, g, weight_decay)
        u = torch.mul(g, per_member(1 - alpha, s), out=tmp[i])
        s.mul_(per_member(alpha, s)).addcmul_(u, g)         # s ← βs + (1−β)g²
        if centered:
            m = ms[i].mul_(per_member(alpha, s)).addcmul_(g, per_member(1 - alpha, s))
            denom = centered_root(s, m)                     # √max(s − m², 0)
        else:
            denom = torch.sqrt(s, out=u)                    # √s
        denom.add_(per_member(eps, s))
        w.addcmul_(torch.div(g, denom, out=u), per_member(-lr, w))  # w ← w − η g/(√s+ε)


_IMPLS = {"reference": rmsprop_reference, "foreach": rmsprop_foreach}


class RMSprop(BaseOptimizer):
    r"""RMSprop, from the lecture::

        g ← g + λw                        (weight_decay λ)
        s ← βs + (1−β)g²,   s₀ = 0        (β = alpha)
        w ← w − η g / (√s + ε)

    Options with torch's names and semantics: ``centered`` divides by
    √max(s − m², 0) + ε with m ← βm + (1−β)g (the clamp only catches rounding,
    where torch would return NaN); ``momentum=μ`` keeps a buffer
    b ← μb + g/(√s+ε) and steps w ← w − η b.

    Defaults (the lecture's): lr=1e-3, alpha=0.9, eps=1e-8. torch.optim.RMSprop
    has the same update but defaults lr=1e-2, alpha=0.99: pass those to
    reproduce it. State (torch's names): ``step``, ``square_avg``,
    ``grad_avg`` (centered), ``momentum_buffer`` (momentum > 0).
    """

    _impls = _IMPLS

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3, alpha: float = 0.9,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, fused: bool | None = None,
                 nonfinite: str = "apply"):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize,
                        foreach=foreach, fused=fused)
        super().__init__(params, defaults, nonfinite=nonfinite)

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        return {"step": torch.tensor(0.0),
                "square_avg": torch.zeros_like(p, memory_format=torch.preserve_format)}

    _counts = True  # t is kept for torch's state_dict; the update does not use it

    def _lists(self, group: dict[str, Any], params: list[torch.Tensor],
               states: list[dict[str, Any]]) -> list[list[Any]]:
        momentum, centered = value(group["momentum"]), bool(group["centered"])
        for p, st in zip(params, states) if centered or momentum > 0 else ():
            # created on first need: a schedule may turn momentum on after the first step
            if centered and "grad_avg" not in st:
                st["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if momentum > 0 and "momentum_buffer" not in st:
                st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return [[st["square_avg"] for st in states],
                [st.get("grad_avg") if centered else None for st in states],
                [st.get("momentum_buffer") if momentum > 0 else None for st in states]]

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(lr=value(group["lr"]), alpha=value(group["alpha"]), eps=value(group["eps"]),
                    weight_decay=value(group["weight_decay"]), momentum=value(group["momentum"]),
                    centered=bool(group["centered"]), maximize=bool(group["maximize"]))


SPEC = register(OptimizerSpec(
    name="rmsprop", cls=RMSprop, lecture=True, kernel="rmsprop",
    hyperparameters=dict(lr=NONNEG, alpha=UNIT, eps=NONNEG, weight_decay=NONNEG,
                         momentum=UNIT, centered=Flag(), maximize=Flag()),
    batched=Batched(rmsprop_batched, rmsprop_batched_states,
                    per_member=("lr", "alpha", "eps", "weight_decay"),
                    shared=("centered",)),
    peer=(torch.optim.RMSprop, dict(lr=1e-3, alpha=0.9)),
    search={"lr": (1e-5, 0.1), "alpha": (0.5, 0.9999), "eps": (1e-10, 1e-2)},
))
