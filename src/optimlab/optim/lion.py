"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2)."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.kernels.formula import Formula, sign
from optimlab.optim._base import BaseOptimizer, value
from optimlab.optim._formula import foreach, reference
from optimlab.optim._spec import NONNEG, Batched, OptimizerSpec, Pair, register


def lion_element(w, g, m, *, lr, beta1, rest1, beta2, rest2, shrink):
    """One element of Lion; rest1 = 1−β₁, rest2 = 1−β₂, shrink = 1−ηλ."""
    c = beta1 * m + rest1 * g                                # c ← β₁m + (1−β₁)g
    w = w * shrink - lr * sign(c)                            # w ← w − η(sign(c) + λw)
    m = beta2 * m + rest2 * g                                # m ← β₂m + (1−β₂)g
    return w, m


FORMULA = Formula(
    name="lion", element=lion_element, states=("m",),
    scalars=lambda kw: dict(lr=kw["lr"], beta1=kw["beta1"], rest1=1 - kw["beta1"],
                            beta2=kw["beta2"], rest2=1 - kw["beta2"],
                            shrink=1 - kw["lr"] * kw["weight_decay"]),
    keys={"m": "exp_avg"})


class Lion(BaseOptimizer):
    r"""Lion, the sign of an interpolated momentum, with decoupled weight decay::

        c ← β₁m + (1−β₁)g
        w ← w − η (sign(c) + λw)
        m ← β₂m + (1−β₂)g          (m₀ = 0)

    Every weight moves by ±η (or 0) per step, so η is typically 3–10× smaller than
    AdamW's and λ as much larger (Chen et al. 2023, §5). Defaults (the paper's and
    lion-pytorch's): lr=1e-4, betas=(0.9, 0.99), weight_decay=0. The update is
    lion_pytorch.Lion's; state (its name): ``exp_avg`` (m).
    """

    _impls = {"reference": reference(FORMULA), "foreach": foreach(FORMULA)}

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, *,
                 foreach: bool | None = None, fused: bool | None = None,
                 nonfinite: str = "apply"):
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, foreach=foreach,
                        fused=fused)
        super().__init__(params, defaults, nonfinite=nonfinite)

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        return {"exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        return dict(lr=value(group["lr"]), beta1=value(beta1), beta2=value(beta2),
                    weight_decay=value(group["weight_decay"]))


SPEC = register(OptimizerSpec(
    name="lion", cls=Lion, formula=FORMULA,
    hyperparameters=dict(lr=NONNEG, betas=Pair(("beta1", "beta2")), weight_decay=NONNEG),
    batched=Batched(per_member=("lr", "betas", "weight_decay")),
    # the same bytes per step: one state buffer, as torch's heavy ball
    peer=(torch.optim.SGD, dict(lr=1e-4, momentum=0.9)),
    # η 3–10× below AdamW's (Chen et al. 2023, §5); the βs around the paper's 0.9, 0.99
    search={"lr": (1e-6, 1e-2), "beta1": (0.5, 0.99), "beta2": (0.9, 0.9999),
            "weight_decay": (1e-4, 1.0)},
))
