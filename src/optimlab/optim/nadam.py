"""NAdam (Dozat 2016, "Incorporating Nesterov Momentum into Adam") and NAdamW (its
decoupled weight decay), as torch.optim.NAdam computes them."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.kernels.formula import Formula, Kw, sqrt
from optimlab.kernels.scalars import corrections
from optimlab.optim._base import BaseOptimizer, value
from optimlab.optim._formula import foreach, reference
from optimlab.optim._running import Running
from optimlab.optim._spec import NONNEG, Batched, Flag, OptimizerSpec, Pair, register
from optimlab.optim.adam import Adam, adam_scalars


def nadam_denominator(s, *, eps, bc2):
    """√ŝ + ε, ŝ = s/(1−β₂ᵗ)."""
    return sqrt(s / bc2) + eps


def nadam_element(w, g, v, s, *, beta1, rest1, beta2, rest2, eps, weight_decay, shrink,
                  grad_step, momentum_step, bc2, decoupled, decay):
    """One element of NAdam (NAdamW: `decoupled`); the terms of step t (`_terms`):
    grad_step = −η(1−μₜ)/(1−Πₜ), momentum_step = −ημₜ₊₁/(1−Πₜ₊₁), bc2 = 1−β₂ᵗ."""
    if decoupled:
        w = w * shrink                                       # w ← w(1 − ηλ)   (NAdamW)
    elif decay:
        g = g + weight_decay * w                             # g ← g + λw      (L2)
    v = beta1 * v + rest1 * g                                # v ← β₁v + (1−β₁)g
    s = beta2 * s + rest2 * g * g                            # s ← β₂s + (1−β₂)g²
    d = nadam_denominator(s, eps=eps, bc2=bc2)
    w = w + grad_step * g / d + momentum_step * v / d        # Nesterov: g now, v a step ahead
    return w, v, s


# ∏_{i≤t} (1 − ½·0.96^{iψ}) for a momentum_decay ψ: μ's product is β₁ᵗ times this, so one
# running product per ψ serves every β₁ (the members of a sweep included)
_warmup_product = Running(1.0, lambda psi, i, product: product * (1 - 0.5 * 0.96 ** (i * psi)))


def momentum_schedule(beta1: float, psi: float, t: int) -> tuple[float, float, float, float]:
    """(μₜ, μₜ₊₁, Πₜ, Πₜ₊₁): Dozat's warmed-up momentum μᵢ = β₁(1 − ½·0.96^{iψ}) and the
    products Πₜ = μ₁⋯μₜ (torch's `mu_product`), a function of the step alone."""
    mu = [beta1 * (1 - 0.5 * 0.96 ** (i * psi)) for i in (t, t + 1)]
    return (mu[0], mu[1], beta1**t * _warmup_product(psi, t),
            beta1 ** (t + 1) * _warmup_product(psi, t + 1))


def _terms(kw: Kw, t: Any) -> dict[str, Any]:
    mu, mu_next, product, product_next = momentum_schedule(kw["beta1"], kw["momentum_decay"], t)
    lr = kw["lr"]
    return dict(grad_step=-lr * (1 - mu) / (1 - product),
                momentum_step=-lr * mu_next / (1 - product_next),
                bc2=corrections(kw["beta1"], kw["beta2"], t, True)[1])


FORMULA = Formula(
    name="nadam", element=nadam_element, states=("v", "s"), scalars=adam_scalars,
    flags=lambda kw: dict(decoupled=bool(kw["decoupled"]) and kw["weight_decay"] != 0,
                          decay=not kw["decoupled"] and kw["weight_decay"] != 0),
    terms=_terms, denominator=nadam_denominator, keys={"v": "exp_avg", "s": "exp_avg_sq"})


class NAdam(BaseOptimizer):
    r"""NAdam: Adam whose step takes the momentum one step ahead (Nesterov)::

        g ← g + λw                       (weight_decay λ; decoupled_weight_decay: w ← w(1 − ηλ))
        μₜ = β₁(1 − ½·0.96^{tψ}),  Πₜ = μ₁⋯μₜ            (ψ = momentum_decay)
        v ← β₁v + (1−β₁)g,   s ← β₂s + (1−β₂)g²          (v₀ = s₀ = 0, t counts from 1)
        w ← w − η [(1−μₜ)/(1−Πₜ) g + μₜ₊₁/(1−Πₜ₊₁) v] / (√(s/(1−β₂ᵗ)) + ε)

    Defaults (torch's): lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    momentum_decay=4e-3. The update is torch.optim.NAdam's, up to rounding. torch keeps Πₜ
    in the state (``mu_product``, float32 unless the default dtype is float64) and
    multiplies it by each step's μ; here Πₜ = β₁ᵗ∏(1 − ½·0.96^{iψ}) comes from t alone, in
    float64, so under a schedule of β₁ (OneCycleLR's) it is the product at today's β₁.
    State (torch's names): ``step``, ``exp_avg`` (v), ``exp_avg_sq`` (s).
    """

    _impls = {"reference": reference(FORMULA), "foreach": foreach(FORMULA)}
    _counts = _takes_steps = True

    def __init__(self, params: Any, lr: float | torch.Tensor = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, fused: bool | None = None,
                 nonfinite: str = "apply"):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                        foreach=foreach, fused=fused)
        super().__init__(params, defaults, nonfinite=nonfinite)

    _init_state = Adam._init_state

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        return dict(lr=value(group["lr"]), beta1=value(beta1), beta2=value(beta2),
                    eps=value(group["eps"]), weight_decay=value(group["weight_decay"]),
                    momentum_decay=value(group["momentum_decay"]),
                    decoupled=bool(group["decoupled_weight_decay"]),
                    maximize=bool(group["maximize"]))


SPEC = register(OptimizerSpec(
    name="nadam", cls=NAdam, formula=FORMULA,
    hyperparameters=dict(lr=NONNEG, betas=Pair(("beta1", "beta2")), eps=NONNEG,
                         weight_decay=NONNEG, momentum_decay=NONNEG,
                         decoupled_weight_decay=Flag(), maximize=Flag()),
    batched=Batched(per_member=("lr", "betas", "eps", "weight_decay", "momentum_decay"),
                    shared=("decoupled_weight_decay",)),
    peer=(torch.optim.NAdam, dict(lr=2e-3)),
    # Adam's space (docs/lab.md, "Random search"): NAdam is Adam with Nesterov's look-ahead
    # (Dozat 2016 tunes η and the βs as for Adam); ψ spans decades around Dozat's 4e-3
    search={"lr": (1e-5, 0.1), "beta1": (0.5, 0.999), "beta2": (0.9, 0.99999),
            "eps": (1e-10, 1e-2), "momentum_decay": (1e-4, 0.1)},
))
