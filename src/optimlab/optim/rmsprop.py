"""RMSprop: a per-parameter step size from a moving average of squared gradients."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.kernels.formula import Formula, maximum, sqrt
from optimlab.optim._base import BaseOptimizer, value
from optimlab.optim._formula import foreach, reference
from optimlab.optim._spec import NONNEG, UNIT, Batched, Flag, OptimizerSpec, register


def rmsprop_denominator(s, m, *, eps, centered):
    """√s + ε; centered: √max(s − m², 0) + ε (s ≥ m² in exact arithmetic; the clamp catches
    rounding)."""
    if centered:
        return sqrt(maximum(s - m * m, 0.0)) + eps
    return sqrt(s) + eps


def rmsprop_element(w, g, s, m, b, *, lr, beta, rest, eps, weight_decay, momentum, decay,
                    centered, heavy_ball):
    """One element of RMSprop (β = alpha, rest = 1−β); m only when centered, b only with
    momentum."""
    if decay:
        g = g + weight_decay * w                             # g ← g + λw
    s = beta * s + rest * g * g                              # s ← βs + (1−β)g²
    if centered:
        m = beta * m + rest * g                              # m ← βm + (1−β)g
    denom = rmsprop_denominator(s, m, eps=eps, centered=centered)  # √s + ε
    if heavy_ball:
        b = momentum * b + g / denom                         # b ← μb + g/(√s+ε)
        w = w - lr * b                                       # w ← w − η b
    else:
        w = w - lr * g / denom                               # w ← w − η g/(√s+ε)
    return w, s, m, b


FORMULA = Formula(
    name="rmsprop", element=rmsprop_element, states=("s", "m", "b"),
    scalars=lambda kw: dict(lr=kw["lr"], beta=kw["alpha"], rest=1 - kw["alpha"], eps=kw["eps"],
                            weight_decay=kw["weight_decay"], momentum=kw["momentum"]),
    flags=lambda kw: dict(decay=kw["weight_decay"] != 0, centered=bool(kw["centered"]),
                          heavy_ball=kw["momentum"] > 0),
    uses={"m": "centered", "b": "heavy_ball"}, denominator=rmsprop_denominator,
    keys={"s": "square_avg", "m": "grad_avg", "b": "momentum_buffer"})
rmsprop_reference = reference(FORMULA)
rmsprop_foreach = foreach(FORMULA)
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

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(lr=value(group["lr"]), alpha=value(group["alpha"]), eps=value(group["eps"]),
                    weight_decay=value(group["weight_decay"]), momentum=value(group["momentum"]),
                    centered=bool(group["centered"]), maximize=bool(group["maximize"]))


SPEC = register(OptimizerSpec(
    name="rmsprop", cls=RMSprop, lecture=True, formula=FORMULA,
    hyperparameters=dict(lr=NONNEG, alpha=UNIT, eps=NONNEG, weight_decay=NONNEG,
                         momentum=UNIT, centered=Flag(), maximize=Flag()),
    batched=Batched(per_member=("lr", "alpha", "eps", "weight_decay"),
                    shared=("centered",)),
    peer=(torch.optim.RMSprop, dict(lr=1e-3, alpha=0.9)),
    search={"lr": (1e-5, 0.1), "alpha": (0.5, 0.9999), "eps": (1e-10, 1e-2)},
))
