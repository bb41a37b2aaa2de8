"""What the benchmark runs: model shapes, and each optimizer's implementations (ours, torch's)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from optimlab.optim import OPTIMIZERS

# Minimum bytes moved per fp32 parameter per step (DESIGN.md); float64 doubles them.
BYTES_PER_PARAM = {"sgd": 12, "momentum": 20, "rmsprop": 20, "adam": 28}

# The torch.optim method with the same memory traffic, and the hyperparameters both take.
# Our EMA Momentum moves the same bytes as torch's heavy-ball SGD(momentum=0.9).
TORCH_TWIN: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, dict(lr=1e-3)),
    "momentum": (torch.optim.SGD, dict(lr=1e-3, momentum=0.9)),
    "rmsprop": (torch.optim.RMSprop, dict(lr=1e-3, alpha=0.9)),
    "adam": (torch.optim.Adam, dict(lr=1e-3)),
}
OURS_KW: dict[str, dict[str, Any]] = {
    "sgd": dict(lr=1e-3), "momentum": dict(lr=1e-3, momentum=0.9),
    "rmsprop": dict(lr=1e-3, alpha=0.9), "adam": dict(lr=1e-3),
}
# torch.optim classes that accept fused=True on CPU (RMSprop has no fused path).
TORCH_FUSED = {torch.optim.SGD, torch.optim.Adam}


def _even(total: int, count: int) -> list[tuple[int, ...]]:
    """`count` vectors that add up to `total` elements."""
    return [(total // count + (1 if i < total % count else 0),) for i in range(count)]


def _transformer(layers: int, width: int, vocab: int) -> list[tuple[int, ...]]:
    """A small GPT-like parameter list: one big embedding, per-layer matrices, many vectors."""
    shapes: list[tuple[int, ...]] = [(vocab, width)]
    for _ in range(layers):
        shapes += [(width,), (width,), (3 * width, width), (3 * width,), (width, width),
                   (width,), (width,), (width,), (4 * width, width), (4 * width,),
                   (width, 4 * width), (width,)]
    return shapes + [(width,), (width,)]


# name -> (description, shapes). The project's sizes: 1M and 25M parameters in 63 tensors,
# a realistic list (a few large, many small) and 200 small tensors for per-step overhead.
MODELS: dict[str, tuple[str, Callable[[], list[tuple[int, ...]]]]] = {
    "1M": ("1M parameters in 63 tensors", lambda: _even(1_000_000, 63)),
    "25M": ("25M parameters in 63 tensors", lambda: _even(25_000_000, 63)),
    "mixed": ("GPT-like: 12 layers, width 256, vocab 32000",
              lambda: _transformer(12, 256, 32000)),
    "small200": ("200 tensors of 512 parameters", lambda: _even(200 * 512, 200)),
}


@dataclass
class Impl:
    """One implementation to time: a label and how to build its optimizer."""

    name: str   # "ours-fused", "torch-foreach", ...
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def implementations(optimizer: str) -> list[Impl]:
    """Ours (reference, foreach, fused), then torch's (single-tensor, foreach, fused if any)."""
    ours_cls, ours_kw = OPTIMIZERS[optimizer], OURS_KW[optimizer]
    torch_cls, torch_kw = TORCH_TWIN[optimizer]
    paths: list[tuple[str, Any, dict[str, Any]]] = [
        ("ours-reference", ours_cls, {**ours_kw, "foreach": False}),
        ("ours-foreach", ours_cls, {**ours_kw, "foreach": True}),
        ("ours-fused", ours_cls, {**ours_kw, "fused": True}),
        ("torch-single", torch_cls, {**torch_kw, "foreach": False}),
        ("torch-foreach", torch_cls, {**torch_kw, "foreach": True}),
    ]
    if torch_cls in TORCH_FUSED:
        paths.append(("torch-fused", torch_cls, {**torch_kw, "fused": True}))
    return [Impl(name, functools.partial(cls, **kw)) for name, cls, kw in paths]


def make_params(shapes: list[tuple[int, ...]], dtype: torch.dtype,
                seed: int = 0, device: str = "cpu") -> list[torch.Tensor]:
    """Parameters with fixed random gradients; every implementation steps the same tensors.
    Drawn on the CPU, so that every device gets the same numbers."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.randn(shape, generator=gen, dtype=dtype).to(device).requires_grad_()
        p.grad = torch.randn(shape, generator=gen, dtype=dtype).to(device)
        params.append(p)
    return params
