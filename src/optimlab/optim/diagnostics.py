"""What an optimizer's state says about its step size, for tools outside the optim layer.

The lab must not read optimizer internals, so the knowledge lives here. It
reads only torch-compatible state names (``step``, ``square_avg``,
``grad_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``sum``) and the group's
hyperparameters, so it works for torch.optim.RMSprop/Adam/AdamW/Adagrad too.
"""

from __future__ import annotations

import torch

from optimlab.kernels.scalars import corrections, decayed_lr
from optimlab.optim._base import value


def effective_step_size(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> torch.Tensor | None:
    r"""The per-element factor η/(√ŝ + ε) that the update multiplies, or None.

    - RMSprop: η/(√s + ε); centered: η/(√max(s − m², 0) + ε). The step is this times g
      (with momentum μ > 0, times g inside the buffer b ← μb + g/(√s+ε)·…).
    - Adam, AdamW: η/(√ŝ + ε) with ŝ = s/(1 − β₂ᵗ) (amsgrad: s is the running max).
      The step is this times v̂ = v/(1 − β₁ᵗ), not times g; AdamW's decay ηλw
      comes on top. Without bias correction ŝ = s.
    - AdaGrad: η_t/(√s + ε) with s the sum of squared gradients, η_t = η/(1 + (t−1)·lr_decay).

    None when the optimizer keeps no second moment (SGD, Momentum), when `p`
    has no state yet (before its first step) or is not in the optimizer.
    Returns a new float tensor shaped like `p` (complex `p`: its real view).
    """
    group = _group_of(optimizer, p)
    state = optimizer.state.get(p, {}) if group is not None else {}
    if group is None or not state:
        return None
    lr, eps = value(group["lr"]), value(group.get("eps", 0.0))
    if "square_avg" in state:
        s = _real(state["square_avg"])
        m = _real(state["grad_avg"]) if group.get("centered") else None
        root = s.sqrt() if m is None else (s - m * m).clamp_min(0).sqrt()
        return lr / (root + eps)
    if "exp_avg_sq" in state:
        t = value(state["step"])
        s = _real(state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"])
        _, bc2 = corrections(0.0, value(group["betas"][1]), t,
                             group.get("bias_correction", True))
        return lr / ((s / bc2).sqrt() + eps)
    if "sum" in state:
        clr = decayed_lr(lr, value(group.get("lr_decay", 0.0)), value(state["step"]))
        return clr / (_real(state["sum"]).sqrt() + eps)
    return None


def _group_of(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> dict | None:
    for group in optimizer.param_groups:
        if any(q is p for q in group["params"]):
            return group
    return None


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t
