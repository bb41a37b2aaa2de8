"""The per-step scalars of the updates, written once for every path.

Adam's bias corrections and AdaGrad's decayed learning rate depend only on the step t
and the hyperparameters, not on the tensors. The optimizers' reference, foreach and
batched updates, their diagnostics, and the fused kernels (which receive them
precomputed) all read them from here: the kernels may know this module, and no
optimizer class. Each takes floats, [K] tensors or NumPy arrays alike.
"""

from __future__ import annotations

from typing import Any


def corrections(beta1: Any, beta2: Any, t: Any, bias_correction: bool) -> tuple[Any, Any]:
    """(1−β₁ᵗ, 1−β₂ᵗ), or (1, 1) without bias correction (floats, [K] tensors or arrays)."""
    return (1 - beta1**t, 1 - beta2**t) if bias_correction else (1.0, 1.0)


def decayed_lr(lr: Any, lr_decay: Any, t: Any) -> Any:
    """η/(1 + (t−1)·lr_decay): torch's learning-rate decay at step t (counted from 1)."""
    return lr / (1 + (t - 1) * lr_decay)
