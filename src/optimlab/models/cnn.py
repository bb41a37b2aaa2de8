"""The MNIST-1D reference CNN (ConvBase), in 1-D for signals and 2-D for images."""

from __future__ import annotations

import math

import torch
from torch import nn

# The reference ConvBase: 25 channels; (kernel, stride, padding) of its three convolutions.
CHANNELS = 25
LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


def conv_out(size: int) -> int:
    """Spatial size after the three convolutions (floor((n + 2p − k) / s) + 1 each)."""
    for kernel, stride, padding in LAYERS:
        size = (size + 2 * padding - kernel) // stride + 1
    return size


class ConvNet(nn.Module):
    """Three stride-2 convolutions with ReLU, flatten, linear head.

    ``(L,)`` inputs are signals with one channel, ``(C, L)`` signals with C
    channels (Conv1d); ``(C, H, W)`` are images (Conv2d, same kernels per axis).
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        shape = (1, *input_shape) if len(input_shape) == 1 else tuple(input_shape)
        spatial = [conv_out(n) for n in shape[1:]]
        if min(spatial) < 1:
            raise ValueError(
                f"input_shape={tuple(input_shape)!r} is too small for the cnn; allowed: every "
                f"spatial size >= 3 (three stride-2 convolutions, kernel 5 then 3)")
        conv = nn.Conv1d if len(shape) == 2 else nn.Conv2d
        channels = (shape[0], CHANNELS, CHANNELS, CHANNELS)
        self.convs = nn.ModuleList(
            conv(c_in, c_out, k, stride=s, padding=p)
            for c_in, c_out, (k, s, p) in zip(channels, channels[1:], LAYERS, strict=False))
        self.linear = nn.Linear(CHANNELS * math.prod(spatial), num_classes)
        self.example_shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], *self.example_shape)
        for conv in self.convs:
            h = torch.relu(conv(h))
        return self.linear(h.flatten(1))
