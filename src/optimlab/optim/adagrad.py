"""AdaGrad: a per-parameter step size from the sum of all squared gradients so far."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.kernels.formula import Formula, sqrt
from optimlab.kernels.scalars import decayed_lr
from optimlab.optim._base import BaseOptimizer, value
from optimlab.optim._formula import foreach, reference
from optimlab.optim._spec import NONNEG, Batched, Flag, OptimizerSpec, register


def adagrad_denominator(s, *, eps):
    """√s + ε."""
    return sqrt(s) + eps


def adagrad_element(w, g, s, *, eps, weight_decay, step_size, decay):
    """One element of AdaGrad; the term of step t: step_size = −η/(1 + (t−1)·lr_decay)."""
    if decay:
        g = g + weight_decay * w                             # g ← g + λw
    s = s + g * g                                            # s ← s + g²
    w = w + step_size * g / adagrad_denominator(s, eps=eps)  # w ← w − η_t g/(√s+ε)
    return w, s


FORMULA = Formula(
    name="adagrad", element=adagrad_element, states=("s",),
    scalars=lambda kw: dict(eps=kw["eps"], weight_decay=kw["weight_decay"]),
    flags=lambda kw: dict(decay=kw["weight_decay"] != 0),
    terms=lambda kw, t: dict(step_size=-decayed_lr(kw["lr"], kw["lr_decay"], t)),
    initial={"s": "initial_accumulator_value"}, denominator=adagrad_denominator,
    keys={"s": "sum"})
adagrad_reference = reference(FORMULA)
adagrad_foreach = foreach(FORMULA)
_IMPLS = {"reference": adagrad_reference, "foreach": adagrad_foreach}


class Adagrad(BaseOptimizer):
    r"""AdaGrad (Duchi, Hazan & Singer 2011), the method RMSprop repairs::

        g ← g + λw                               (weight_decay λ)
        s ← s + g²,   s₀ = initial_accumulator_value
        w ← w − η_t g / (√s + ε),   η_t = η / (1 + (t−1)·lr_decay)

    s only grows, so the step of every weight shrinks forever; RMSprop replaces the sum
    by a moving average. Defaults (torch's): lr=1e-2, lr_decay=0, weight_decay=0,
    initial_accumulator_value=0, eps=1e-10. The update is torch.optim.Adagrad's; unlike
    torch it takes dense gradients only. State (torch's names): ``step``, ``sum`` (s).
    """

    _impls = _IMPLS

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, *, maximize: bool = False, foreach: bool | None = None,
                 fused: bool | None = None, nonfinite: str = "apply"):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize, foreach=foreach, fused=fused)
        super().__init__(params, defaults, nonfinite=nonfinite)

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        return {"step": torch.tensor(0.0)}  # "sum" needs the group's initial value

    _counts = _takes_steps = True

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(lr=value(group["lr"]), lr_decay=value(group["lr_decay"]),
                    eps=value(group["eps"]), weight_decay=value(group["weight_decay"]),
                    maximize=bool(group["maximize"]))


SPEC = register(OptimizerSpec(
    name="adagrad", cls=Adagrad, formula=FORMULA,
    hyperparameters=dict(lr=NONNEG, lr_decay=NONNEG, weight_decay=NONNEG,
                         initial_accumulator_value=NONNEG, eps=NONNEG, maximize=Flag()),
    batched=Batched(per_member=("lr", "lr_decay", "eps", "weight_decay"),
                    shared=("initial_accumulator_value",)),
    peer=(torch.optim.Adagrad, dict(lr=1e-2)),
    search={"lr": (1e-4, 1.0), "eps": (1e-10, 1e-2)},
    decays_lr="η/(√s + ε) with s the sum of every g² so far, which only grows",
))
