"""Logistic regression and the MNIST-1D reference MLP, on flattened inputs."""

from __future__ import annotations

import math

import torch
from torch import nn

# Width of both hidden layers: the MNIST-1D reference MLP (MLPBase, hidden_size=100).
HIDDEN = 100


class LogReg(nn.Module):
    """Multinomial logistic regression: logits = W x + b on the flattened input."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """D → 100 → 100 → classes with ReLU; h₂ = h₁ + relu(W₂ h₁ + b₂) as in the reference."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(math.prod(input_shape), HIDDEN)
        self.linear2 = nn.Linear(HIDDEN, HIDDEN)
        self.linear3 = nn.Linear(HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.linear1(x.flatten(1)))
        h = h + torch.relu(self.linear2(h))
        return self.linear3(h)
