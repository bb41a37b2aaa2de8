"""Adam (momentum + RMSprop with bias correction) and AdamW (decoupled weight decay)."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.kernels.formula import Formula, Kw, maximum, sqrt
from optimlab.kernels.scalars import corrections
from optimlab.optim._base import BaseOptimizer, value
from optimlab.optim._formula import foreach, reference
from optimlab.optim._spec import NONNEG, Batched, Flag, Number, OptimizerSpec, Pair, register


def adam_denominator(s, s_max, *, eps, bc2, amsgrad):
    """√ŝ + ε, ŝ = s/(1−β₂ᵗ) (amsgrad: of the running max of s)."""
    if amsgrad:
        return sqrt(s_max / bc2) + eps
    return sqrt(s / bc2) + eps


def adam_element(w, g, v, s, s_max, *, beta1, rest1, beta2, rest2, eps, weight_decay, shrink,
                 step_size, bc2, decoupled, decay, amsgrad):
    """One element of Adam (AdamW: `decoupled`); the terms of step t: step_size = −η/(1−β₁ᵗ),
    bc2 = 1−β₂ᵗ (see `corrections`); rest1 = 1−β₁, rest2 = 1−β₂, shrink = 1−ηλ."""
    if decoupled:
        w = w * shrink                                       # w ← w(1 − ηλ)   (AdamW)
    elif decay:
        g = g + weight_decay * w                             # g ← g + λw      (Adam, L2)
    v = beta1 * v + rest1 * g                                # v ← β₁v + (1−β₁)g  (momentum)
    s = beta2 * s + rest2 * g * g                            # s ← β₂s + (1−β₂)g²  (RMSprop)
    if amsgrad:
        s_max = maximum(s_max, s)                            # ŝ uses the max over time
    w = w + step_size * v / adam_denominator(s, s_max, eps=eps, bc2=bc2, amsgrad=amsgrad)
    return w, v, s, s_max                                    # w ← w − η v̂/(√ŝ+ε)


def adam_scalars(kw: Kw) -> dict[str, Any]:
    beta1, beta2, lr, wd = kw["beta1"], kw["beta2"], kw["lr"], kw["weight_decay"]
    return dict(beta1=beta1, rest1=1 - beta1, beta2=beta2, rest2=1 - beta2, eps=kw["eps"],
                weight_decay=wd, shrink=1 - lr * wd)


def _terms(kw: Kw, t: Any) -> dict[str, Any]:
    bc1, bc2 = corrections(kw["beta1"], kw["beta2"], t, kw.get("bias_correction", True))
    return dict(step_size=-kw["lr"] / bc1, bc2=bc2)


FORMULA = Formula(
    name="adam", element=adam_element, states=("v", "s", "s_max"), scalars=adam_scalars,
    flags=lambda kw: dict(decoupled=bool(kw["decoupled"]),
                          decay=not kw["decoupled"] and kw["weight_decay"] != 0,
                          amsgrad=bool(kw["amsgrad"])),
    terms=_terms, uses={"s_max": "amsgrad"}, denominator=adam_denominator,
    keys={"v": "exp_avg", "s": "exp_avg_sq", "s_max": "max_exp_avg_sq"})
adam_reference = reference(FORMULA)
adam_foreach = foreach(FORMULA)
_IMPLS = {"reference": adam_reference, "foreach": adam_foreach}


class Adam(BaseOptimizer):
    r"""Adam, from the lecture::

        g ← g + λw                                   (weight_decay λ; AdamW decouples it)
        v ← β₁v + (1−β₁)g,   s ← β₂s + (1−β₂)g²      (v₀ = s₀ = 0, t counts from 1)
        v̂ = v/(1−β₁ᵗ),  ŝ = s/(1−β₂ᵗ)
        w ← w − η v̂/(√ŝ + ε)

    ``amsgrad`` uses the running maximum of s in ŝ; ``bias_correction=False`` uses
    v̂ = v, ŝ = s (Kingma & Ba §3: the large early steps the correction prevents).
    Defaults (the lecture's
    and torch's): lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.
    The update is torch.optim.Adam's (up to rounding: torch computes
    √s/√(1−β₂ᵗ), we compute √(s/(1−β₂ᵗ))). State (torch's names): ``step``,
    ``exp_avg`` (v), ``exp_avg_sq`` (s), ``max_exp_avg_sq`` (amsgrad).
    """

    _impls = _IMPLS
    _decoupled = False

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 bias_correction: bool = True, foreach: bool | None = None,
                 fused: bool | None = None, nonfinite: str = "apply"):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, bias_correction=bias_correction, foreach=foreach,
                        fused=fused)
        super().__init__(params, defaults, nonfinite=nonfinite)

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        zeros = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        return {"step": torch.tensor(0.0), "exp_avg": zeros(), "exp_avg_sq": zeros()}

    _counts = _takes_steps = True

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        return dict(lr=value(group["lr"]), beta1=value(beta1), beta2=value(beta2),
                    eps=value(group["eps"]), weight_decay=value(group["weight_decay"]),
                    decoupled=self._decoupled, amsgrad=bool(group["amsgrad"]),
                    maximize=bool(group["maximize"]),
                    bias_correction=bool(group["bias_correction"]))


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter): w ← w(1 − ηλ) before the
    Adam step, instead of adding λw to the gradient. Defaults as Adam, but
    weight_decay=1e-2 (torch.optim.AdamW's). The update is torch.optim.AdamW's, up to
    rounding (as Adam's).
    """

    _decoupled = True

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 bias_correction: bool = True, foreach: bool | None = None,
                 fused: bool | None = None, nonfinite: str = "apply"):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         bias_correction=bias_correction, foreach=foreach, fused=fused,
                         nonfinite=nonfinite)


_HYPERPARAMETERS: dict[str, Number | Flag | Pair] = dict(
    lr=NONNEG, betas=Pair(("beta1", "beta2")), eps=NONNEG, weight_decay=NONNEG, amsgrad=Flag(),
    maximize=Flag(), bias_correction=Flag())
_VARIED = ("lr", "betas", "eps", "weight_decay")
# Adam's and AdamW's default search space (docs/lab.md, "Random search")
_SEARCH = {"lr": (1e-5, 0.1), "beta1": (0.5, 0.999), "beta2": (0.9, 0.99999),
           "eps": (1e-10, 1e-2)}
SPEC = register(OptimizerSpec(
    name="adam", cls=Adam, lecture=True, formula=FORMULA, hyperparameters=_HYPERPARAMETERS,
    batched=Batched(per_member=_VARIED, shared=("bias_correction",)),
    peer=(torch.optim.Adam, dict(lr=1e-3)), search=_SEARCH,
))
SPEC_W = register(OptimizerSpec(
    name="adamw", cls=AdamW, formula=FORMULA, hyperparameters=_HYPERPARAMETERS,
    batched=Batched(per_member=_VARIED, shared=("bias_correction",)),
    peer=(torch.optim.AdamW, dict(lr=1e-3)), search=_SEARCH,
))
