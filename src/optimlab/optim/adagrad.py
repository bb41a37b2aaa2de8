"""AdaGrad: a per-parameter step size from the sum of all squared gradients so far."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.kernels.scalars import decayed_lr
from optimlab.optim._base import BaseOptimizer, gradient, gradients, value
from optimlab.optim._spec import NONNEG, Batched, Flag, OptimizerSpec, register
from optimlab.optim.batched import Tensors, decayed, per_member


def adagrad_reference(params: list[torch.Tensor], grads: list[torch.Tensor],
                      ss: list[torch.Tensor], steps: list[int], *, lr: float, lr_decay: float,
                      eps: float, weight_decay: float, maximize: bool) -> None:
    """One tensor at a time, the formula line by line. `steps[i]` is t, counted from 1."""
    for w, g, s, t in zip(params, grads, ss, steps):
        g = gradient(w, g, maximize=maximize, weight_decay=weight_decay)  # g ← g + λw
        s.addcmul_(g, g)                                     # s ← s + g²
        denom = s.sqrt().add_(eps)                           # √s + ε
        w.addcdiv_(g, denom, value=-decayed_lr(lr, lr_decay, t))  # w ← w − η g/(√s+ε)


def adagrad_foreach(params: list[torch.Tensor], grads: list[torch.Tensor],
                    ss: list[torch.Tensor], steps: list[int], *, lr: float, lr_decay: float,
                    eps: float, weight_decay: float, maximize: bool) -> None:
    """The same update with torch's multi-tensor ops."""
    grads = gradients(params, grads, maximize=maximize, weight_decay=weight_decay)
    torch._foreach_addcmul_(ss, grads, grads)
    denom = torch._foreach_sqrt(ss)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, grads, denom,
                            [-decayed_lr(lr, lr_decay, t) for t in steps])


def adagrad_batched_states(params: Tensors, state: dict[str, Any], *,
                           initial_accumulator_value: float, **shared: Any) -> list[Tensors]:
    """The batched state as the fused kernel's lists: s, initial_accumulator_value at first."""
    if "ss" not in state:
        state["ss"] = [torch.full_like(p, initial_accumulator_value) for p in params]
    return [state["ss"]]


def adagrad_batched(params: Tensors, grads: Tensors, state: dict[str, Any], t: int,
                    tmp: Tensors, *, lr: torch.Tensor, lr_decay: torch.Tensor | None,
                    eps: torch.Tensor, weight_decay: torch.Tensor | None,
                    initial_accumulator_value: float) -> None:
    """K members at once (see `Batched`): s ← s + g², w ← w − η g/(√s + ε)."""
    (ss,) = adagrad_batched_states(params, state,
                                   initial_accumulator_value=initial_accumulator_value)
    step = -(lr if lr_decay is None else decayed_lr(lr, lr_decay, t))  # [K]
    for i, (w, g, s) in enumerate(zip(params, grads, ss, strict=True)):
        g = decayed(w, g, weight_decay)
        s.addcmul_(g, g)                                    # s ← s + g²
        denom = torch.sqrt(s, out=tmp[i]).add_(per_member(eps, s))  # √s + ε
        w.addcmul_(torch.div(g, denom, out=denom), per_member(step, w))  # w ← w − η g/(√s+ε)


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

    def _lists(self, group: dict[str, Any], params: list[torch.Tensor],
               states: list[dict[str, Any]]) -> list[list[Any]]:
        for p, st in zip(params, states):
            if "sum" not in st:
                st["sum"] = torch.full_like(p, value(group["initial_accumulator_value"]),
                                            memory_format=torch.preserve_format)
        return [[st["sum"] for st in states]]

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(lr=value(group["lr"]), lr_decay=value(group["lr_decay"]),
                    eps=value(group["eps"]), weight_decay=value(group["weight_decay"]),
                    maximize=bool(group["maximize"]))


SPEC = register(OptimizerSpec(
    name="adagrad", cls=Adagrad, kernel="adagrad",
    hyperparameters=dict(lr=NONNEG, lr_decay=NONNEG, weight_decay=NONNEG,
                         initial_accumulator_value=NONNEG, eps=NONNEG, maximize=Flag()),
    batched=Batched(adagrad_batched, adagrad_batched_states,
                    per_member=("lr", "lr_decay", "eps", "weight_decay"),
                    optional=("lr_decay", "weight_decay"), shared=("initial_accumulator_value",)),
    peer=(torch.optim.Adagrad, dict(lr=1e-2)),
    search={"lr": (1e-4, 1.0), "eps": (1e-10, 1e-2)},
))
