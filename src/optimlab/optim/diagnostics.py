"""What an optimizer's state says about its step size, for tools outside the optim layer.

The lab must not read optimizer internals, so the knowledge lives here, and it comes from
the optimizers' formulas: the step of an adaptive method is η_t times its direction over
the formula's `denominator` (√ŝ + ε), evaluated here on the optimizer's state. The state
is read under torch's names (`Formula.keys`), so torch.optim.RMSprop, Adam, AdamW and
Adagrad are read through the formula of ours that they equal (their `peer`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from optimlab.kernels.scalars import decayed_lr
from optimlab.optim._base import value
from optimlab.optim._spec import OptimizerSpec, registered


def effective_step_size(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> torch.Tensor | None:
    r"""The per-element factor η_t/(√ŝ + ε) that the update multiplies, or None.

    - RMSprop: η/(√s + ε); centered: η/(√max(s − m², 0) + ε). The step is this times g
      (with momentum μ > 0, times g inside the buffer b ← μb + g/(√s+ε)·…).
    - Adam, AdamW: η/(√ŝ + ε) with ŝ = s/(1 − β₂ᵗ) (amsgrad: s is the running max).
      The step is this times v̂ = v/(1 − β₁ᵗ), not times g; AdamW's decay ηλw
      comes on top. Without bias correction ŝ = s.
    - AdaGrad: η_t/(√s + ε) with s the sum of squared gradients, η_t = η/(1 + (t−1)·lr_decay).

    None when the optimizer's formula has no denominator (SGD, Momentum, ...) or it is
    not one of ours or their torch.optim twins, when `p` has no state yet (before its
    first step) or is not in the optimizer. Returns a new float tensor shaped like `p`
    (complex `p`: its real view).
    """
    spec = _spec_of(optimizer)
    group = _group_of(optimizer, p)
    state = optimizer.state.get(p, {}) if group is not None else {}
    if spec is None or group is None or not state:
        return None
    formula = spec.formula
    assert formula is not None and formula.denominator is not None
    kw = _kwargs(optimizer, spec, group)
    t = value(state["step"]) if "step" in state else 1
    given = {**formula.scalars(kw), **formula.flags(kw),
             **(formula.terms(kw, t) if formula.terms is not None else {})}
    params = inspect.signature(formula.denominator).parameters.values()
    elements = [_real(state[formula.keys[q.name]]) if formula.keys[q.name] in state else None
                for q in params if q.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keywords = {q.name: given[q.name] for q in params
                if q.kind is inspect.Parameter.KEYWORD_ONLY}
    lr = value(group["lr"])
    if "lr_decay" in group:  # AdaGrad's decayed η_t
        lr = decayed_lr(lr, value(group["lr_decay"]), t)
    return lr / formula.denominator(*elements, **keywords)


def _spec_of(optimizer: torch.optim.Optimizer) -> OptimizerSpec | None:
    """The specification whose formula the optimizer's update is: its own, or the one
    whose torch.optim peer it is; None where that formula has no denominator."""
    found = getattr(type(optimizer), "spec", None)
    if found is None:
        found = next((s for s in registered if s.peer[0] is type(optimizer)
                      and s.formula is not None and s.formula.denominator is not None), None)
    if found is None or found.formula is None or found.formula.denominator is None:
        return None
    return found  # type: ignore[no-any-return]


def _kwargs(optimizer: torch.optim.Optimizer, spec: OptimizerSpec,
            group: dict[str, Any]) -> dict[str, Any]:
    """The group's hyperparameters as the formula takes them: our class's `_kwargs`, on a
    torch.optim group too (its keys are ours; ours missing there at their defaults). The
    method reads no instance state, so a torch optimizer needs no twin built (building one
    would cost a full optimizer's set-up per call)."""
    if isinstance(optimizer, spec.cls):
        return optimizer._kwargs(group)  # type: ignore[attr-defined, no-any-return]
    hyper = {k: group.get(k, d) for k, d in spec.defaults.items()}
    return spec.cls._kwargs(spec.cls.__new__(spec.cls), hyper)  # type: ignore[attr-defined, no-any-return]


def _group_of(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> dict | None:
    for group in optimizer.param_groups:
        if any(q is p for q in group["params"]):
            return group
    return None


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t
