"""Loss and accuracy of a model on the full train, val and test sets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SPLITS = ("train", "val", "test")
# Rows per forward pass: bounds memory on large sets (MNIST-1D's splits fit in one chunk).
EVAL_CHUNK = 8192


@torch.no_grad()
def _split_metrics(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor) -> dict[str, float]:
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = 0
    for i in range(0, len(x), EVAL_CHUNK):
        logits = fn(x[i:i + EVAL_CHUNK])
        yb = y[i:i + EVAL_CHUNK]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").to(torch.float64)
        correct += int((logits.argmax(dim=1) == yb).sum())
    return {"loss": float(loss_sum) / len(x), "acc": correct / len(x)}


def evaluate(model_or_fn: nn.Module | Callable[[torch.Tensor], torch.Tensor],
             dataset: Any) -> dict[str, dict[str, float]]:
    """{split: {"loss": mean cross-entropy, "acc": fraction correct}} for train, val, test.

    `model_or_fn` maps a batch of inputs to logits; a Module is put in eval mode for the
    pass and restored after. Empty splits (e.g. no validation set) are left out.
    """
    was_training = isinstance(model_or_fn, nn.Module) and model_or_fn.training
    if was_training:
        model_or_fn.eval()  # type: ignore[union-attr]
    try:
        return {split: _split_metrics(model_or_fn, getattr(dataset, f"x_{split}"),
                                      getattr(dataset, f"y_{split}"))
                for split in SPLITS if len(getattr(dataset, f"y_{split}")) > 0}
    finally:
        if was_training:
            model_or_fn.train()  # type: ignore[union-attr]
