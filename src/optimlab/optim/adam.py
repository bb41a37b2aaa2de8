"""Adam (momentum + RMSprop with bias correction) and AdamW (decoupled weight decay)."""

from __future__ import annotations

import functools
from typing import Any

import torch

from optimlab.kernels.scalars import corrections
from optimlab.optim._base import BaseOptimizer, gradient, gradients, scale_, value
from optimlab.optim._spec import NONNEG, Batched, Flag, Number, OptimizerSpec, Pair, register
from optimlab.optim.batched import Tensors, decayed, per_member, zeros
from optimlab.optim.momentum import average_
from optimlab.optim.rmsprop import average_squares_


def adam_reference(params: list[torch.Tensor], grads: list[torch.Tensor],
                   vs: list[torch.Tensor], ss: list[torch.Tensor],
                   s_maxes: list[torch.Tensor | None], steps: list[int], *, lr: float,
                   beta1: float, beta2: float, eps: float, weight_decay: float,
                   decoupled: bool, amsgrad: bool, maximize: bool,
                   bias_correction: bool = True) -> None:
    """One tensor at a time, the formula line by line. `steps[i]` is t, counted from 1."""
    for w, g, v, s, s_max, t in zip(params, grads, vs, ss, s_maxes, steps):
        if decoupled and weight_decay != 0:
            w.mul_(1 - lr * weight_decay)                    # w ← w(1 − ηλ)   (AdamW)
        g = gradient(w, g, maximize=maximize,                # g ← g + λw      (Adam, L2)
                     weight_decay=0.0 if decoupled else weight_decay)
        average_(v, g, beta1)                                # v ← β₁v + (1−β₁)g  (momentum)
        average_squares_(s, g, beta2)                        # s ← β₂s + (1−β₂)g²  (RMSprop)
        if amsgrad:
            assert s_max is not None
            torch.maximum(s_max, s, out=s_max)               # ŝ uses max over time
            s = s_max
        bc1, bc2 = corrections(beta1, beta2, t, bias_correction)
        denom = (s / bc2).sqrt_().add_(eps)                  # √ŝ + ε,  ŝ = s/(1−β₂ᵗ)
        w.addcdiv_(v, denom, value=-lr / bc1)                # w ← w − η v̂/(√ŝ+ε), v̂ = v/(1−β₁ᵗ)


def adam_foreach(params: list[torch.Tensor], grads: list[torch.Tensor],
                 vs: list[torch.Tensor], ss: list[torch.Tensor],
                 s_maxes: list[torch.Tensor | None], steps: list[int], *, lr: float,
                 beta1: float, beta2: float, eps: float, weight_decay: float,
                 decoupled: bool, amsgrad: bool, maximize: bool,
                 bias_correction: bool = True) -> None:
    """The same update with torch's multi-tensor ops."""
    if decoupled and weight_decay != 0:
        scale_(params, 1 - lr * weight_decay)
    grads = gradients(params, grads, maximize=maximize,
                      weight_decay=0.0 if decoupled else weight_decay)
    scale_(vs, beta1)
    torch._foreach_add_(vs, grads, alpha=1 - beta1)
    scale_(ss, beta2)
    torch._foreach_addcmul_(ss, grads, grads, value=1 - beta2)
    if amsgrad:
        maxes = [m for m in s_maxes if m is not None]
        torch._foreach_maximum_(maxes, ss)
        ss = maxes
    bcs = [corrections(beta1, beta2, t, bias_correction) for t in steps]
    denom = torch._foreach_div(ss, [bc2 for _, bc2 in bcs])
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, vs, denom, [-lr / bc1 for bc1, _ in bcs])


def adam_batched_states(params: Tensors, state: dict[str, Any],
                        **shared: Any) -> list[list[Any]]:
    """The batched state as the fused kernel's lists: v and s, zero at first (no amsgrad)."""
    return [zeros(state, "vs", params), zeros(state, "ss", params), [None] * len(params)]


def adam_batched(params: Tensors, grads: Tensors, state: dict[str, Any], t: int, tmp: Tensors,
                 *, lr: torch.Tensor, beta1: torch.Tensor, beta2: torch.Tensor,
                 eps: torch.Tensor, weight_decay: torch.Tensor | None,
                 bias_correction: bool, decoupled: bool = False) -> None:
    """K members at once (see `Batched`), every member at the same t (AdamW: `decoupled`)."""
    vs, ss, _ = adam_batched_states(params, state)
    bc1, bc2 = corrections(beta1, beta2, t, bias_correction)  # [K] tensors, or 1.0
    for i, (w, g, v, s) in enumerate(zip(params, grads, vs, ss, strict=True)):
        if weight_decay is not None and decoupled:
            w.mul_(1 - per_member(lr * weight_decay, w))    # w ← w(1 − ηλ)   (AdamW)
        elif weight_decay is not None:
            g = decayed(w, g, weight_decay)                 # g ← g + λw      (Adam, L2)
        v.mul_(per_member(beta1, v)).addcmul_(g, per_member(1 - beta1, v))  # v ← β₁v + (1−β₁)g
        u = torch.mul(g, per_member(1 - beta2, s), out=tmp[i])
        s.mul_(per_member(beta2, s)).addcmul_(u, g)         # s ← β₂s + (1−β₂)g²
        denom = torch.div(s, per_member(bc2, s), out=u).sqrt_().add_(per_member(eps, s))
        w.add_(torch.div(v, denom, out=u).mul_(per_member(-lr / bc1, w)))  # w ← w − η v̂/(√ŝ+ε)


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

    def _lists(self, group: dict[str, Any], params: list[torch.Tensor],
               states: list[dict[str, Any]]) -> list[list[Any]]:
        amsgrad = bool(group["amsgrad"])
        if amsgrad:
            for p, st in zip(params, states):
                if "max_exp_avg_sq" not in st:
                    st["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return [[st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states],
                [st.get("max_exp_avg_sq") if amsgrad else None for st in states]]

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
    name="adam", cls=Adam, lecture=True, kernel="adam", hyperparameters=_HYPERPARAMETERS,
    batched=Batched(adam_batched, adam_batched_states, per_member=_VARIED,
                    shared=("bias_correction",)),
    peer=(torch.optim.Adam, dict(lr=1e-3)), search=_SEARCH,
))
SPEC_W = register(OptimizerSpec(
    name="adamw", cls=AdamW, kernel="adam", hyperparameters=_HYPERPARAMETERS,
    batched=Batched(functools.partial(adam_batched, decoupled=True), adam_batched_states,
                    per_member=_VARIED,
                    shared=("bias_correction",)),
    peer=(torch.optim.AdamW, dict(lr=1e-3)), search=_SEARCH,
))
