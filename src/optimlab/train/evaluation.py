"""Loss and accuracy of a model on the full train, val and test sets, and the task's loss.

Tasks: "classification" (cross-entropy on logits, accuracy) and "regression" (mean
squared error; its only metric is the loss).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SPLITS = ("train", "val", "test")
TASKS = ("classification", "regression")
# Rows per forward pass: bounds memory on large sets (MNIST-1D's splits fit in one chunk).
EVAL_CHUNK = 8192
# Rows per pass when K models are evaluated at once: bounds the K-fold intermediates.
STACKED_CHUNK = 512


def _as_target(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The model's output in the target's shape ([B, 1] for targets [B]); never broadcast."""
    if out.shape != y.shape and out.numel() == y.numel():
        out = out.reshape(y.shape)
    if out.shape != y.shape:
        raise ValueError(f"Invalid model output of shape {tuple(out.shape)} for regression "
                         f"targets of shape {tuple(y.shape)}; allowed: the targets' shape")
    return out


def task_loss(task: str, out: torch.Tensor, y: torch.Tensor,
              reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits (classification) or mean squared error (regression).
    For regression the sum reduction sums per example (the mean over output dims)."""
    if task == "classification":
        return F.cross_entropy(out, y, reduction=reduction)
    err = F.mse_loss(_as_target(out, y), y, reduction="none")
    per_example = err.reshape(len(err), -1).mean(1)
    return per_example.sum() if reduction == "sum" else per_example.mean()


@torch.no_grad()
def _split_metrics(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor, task: str) -> dict[str, float]:
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = 0
    for i in range(0, len(x), EVAL_CHUNK):
        out = fn(x[i:i + EVAL_CHUNK])
        yb = y[i:i + EVAL_CHUNK]
        loss_sum += task_loss(task, out, yb, reduction="sum").to(torch.float64)
        if task == "classification":
            correct += int((out.argmax(dim=1) == yb).sum())
    metrics = {"loss": float(loss_sum) / len(x)}
    return metrics | ({"acc": correct / len(x)} if task == "classification" else {})


def evaluate(model_or_fn: nn.Module | Callable[[torch.Tensor], torch.Tensor],
             dataset: Any, task: str = "classification") -> dict[str, dict[str, float]]:
    """{split: {"loss": mean cross-entropy, "acc": fraction correct}} for train, val, test
    (regression: {"loss": mean squared error}).

    `model_or_fn` maps a batch of inputs to logits; a Module is put in eval mode for the
    pass and restored after. Empty splits (e.g. no validation set) are left out.
    """
    was_training = isinstance(model_or_fn, nn.Module) and model_or_fn.training
    if was_training:
        model_or_fn.eval()  # type: ignore[union-attr]
    try:
        return {split: _split_metrics(model_or_fn, getattr(dataset, f"x_{split}"),
                                      getattr(dataset, f"y_{split}"), task)
                for split in SPLITS if len(getattr(dataset, f"y_{split}")) > 0}
    finally:
        if was_training:
            model_or_fn.train()  # type: ignore[union-attr]


@torch.no_grad()
def evaluate_stacked(logits_t: Callable[[torch.Tensor], torch.Tensor], members: int,
                     dataset: Any) -> list[dict[str, dict[str, float]]]:
    """`evaluate` for K stacked models at once: `logits_t(x)` maps a batch of inputs [N, …]
    to every member's logits, [K, classes, N]. One entry per member, as `evaluate`'s."""
    out: list[dict[str, dict[str, float]]] = [{} for _ in range(members)]
    rows = STACKED_CHUNK  # the same for any K: a member's sums do not depend on K
    for split in SPLITS:
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        if len(y) == 0:
            continue
        loss_sum = torch.zeros(members, dtype=torch.float64, device=x.device)
        correct = torch.zeros(members, dtype=torch.int64, device=x.device)
        for i in range(0, len(x), rows):
            logits = logits_t(x[i:i + rows])
            yb = y[i:i + rows].expand(members, -1)
            loss_sum += F.cross_entropy(logits, yb, reduction="none").sum(1).to(torch.float64)
            # the class scores of one example made contiguous first: argmax along rows is
            # 3x faster than along the strided class dim ([K, classes, N]), same indices
            correct += (logits.transpose(1, 2).contiguous().argmax(2) == yb).sum(1)
        for k, (loss, right) in enumerate(zip(loss_sum.tolist(), correct.tolist())):
            out[k][split] = {"loss": loss / len(x), "acc": right / len(x)}
    return out
