"""What the benchmark runs: model shapes, and each optimizer's implementations (ours, torch's)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from optimlab._imports import import_object
from optimlab.optim import SPECS


def bytes_per_param(name: str) -> int:
    """Minimum bytes moved per fp32 parameter per step by optimizer `name` at its defaults:
    w read and written, g read, and each state tensor read and written (so
    SGD 12, Momentum 20, RMSprop 20, Adam 28). The state is counted after one step."""
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    # torch's stubs give type[Optimizer] no `foreach`; every registered class takes it
    opt = SPECS[name].cls([p], foreach=False)  # type: ignore[call-arg]
    opt.step()
    tensors = [t for t in opt.state[p].values()
               if isinstance(t, torch.Tensor) and t.shape == p.shape]
    return 4 * (3 + 2 * len(tensors))


# optimizer -> minimum bytes per fp32 parameter per step; float64 doubles them
BYTES_PER_PARAM = {name: bytes_per_param(name) for name in SPECS}


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


def _hidden(layers: int, width: int) -> list[tuple[int, ...]]:
    """A GPT's hidden matrices only (attention in and out, MLP in and out): what Muon takes."""
    return [(3 * width, width), (width, width), (4 * width, width),
            (width, 4 * width)] * layers


# name -> (description, shapes): 1M and 25M parameters in 63 tensors,
# a realistic list (a few large, many small), 200 small tensors for per-step overhead, and
# 25M parameters in matrices (where a step of Muon is matrix products, not memory traffic).
MODELS: dict[str, tuple[str, Callable[[], list[tuple[int, ...]]]]] = {
    "1M": ("1M parameters in 63 tensors", lambda: _even(1_000_000, 63)),
    "25M": ("25M parameters in 63 tensors", lambda: _even(25_000_000, 63)),
    "mixed": ("GPT-like: 12 layers, width 256, vocab 32000",
              lambda: _transformer(12, 256, 32000)),
    "small200": ("200 tensors of 512 parameters", lambda: _even(200 * 512, 200)),
    "matrices25M": ("GPT-like hidden matrices: 8 layers, width 512", lambda: _hidden(8, 512)),
}


@dataclass
class Impl:
    """One implementation to time: a label and how to build its optimizer."""

    name: str   # "ours-fused", "torch-foreach", ...
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def peer_class(optimizer: str) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The specification's peer: a torch.optim class, or a package's class by import path
    (ValueError, one line, when that package is not installed)."""
    cls, kw = SPECS[optimizer].peer
    if isinstance(cls, str):
        try:
            cls = import_object(cls)
        except ValueError as e:
            raise ValueError(f"Invalid optimizer {optimizer!r} for the bench: its peer {cls} "
                             f"cannot be imported ({e}); allowed: with the peers extra "
                             "installed (pip install 'optimlab[peers]')") from None
    return cls, kw


def _in_train_mode(cls: type[torch.optim.Optimizer], kw: dict[str, Any]
                   ) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    """`cls(params, **kw)`, put in train mode where it has one (schedulefree's refuses a
    step before `train()`)."""
    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        opt = cls(params, **kw)
        if callable(getattr(opt, "train", None)):
            opt.train()  # type: ignore[attr-defined]
        return opt
    return make


def implementations(optimizer: str) -> list[Impl]:
    """Ours at its defaults (reference, foreach, fused or else its default), then its peer
    (single-tensor, foreach, fused where torch has it on the CPU): torch.optim's class, or
    a package's (Schedule-Free's), named `torch-*` all the same."""
    spec = SPECS[optimizer]
    torch_cls, torch_kw = peer_class(optimizer)
    paths: list[tuple[str, Any, dict[str, Any]]] = [
        ("ours-reference", spec.cls, {"foreach": False}),
        ("ours-foreach", spec.cls, {"foreach": True}),
    ]
    if spec.kernel is not None:
        paths.append(("ours-fused", spec.cls, {"fused": True}))
    else:  # its default mixes paths (Muon: foreach on the matrices, fused AdamW on the rest)
        paths.append(("ours-default", spec.cls, {}))
    paths += [("torch-single", torch_cls, {**torch_kw, "foreach": False}),
              ("torch-foreach", torch_cls, {**torch_kw, "foreach": True})]
    if _torch_fuses(torch_cls, torch_kw):
        paths.append(("torch-fused", torch_cls, {**torch_kw, "fused": True}))
    return [Impl(name, _in_train_mode(cls, kw)) for name, cls, kw in paths]


@functools.cache
def _torch_fused_probe(cls: type[torch.optim.Optimizer], kw: tuple[tuple[str, Any], ...]) -> bool:
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    try:
        cls([p], **dict(kw), fused=True).step()  # type: ignore[call-arg]  # stubs: no `fused`
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def _torch_fuses(cls: type[torch.optim.Optimizer], kw: dict[str, Any]) -> bool:
    """Whether torch.optim's `cls` has a fused CPU step (SGD, Adam, AdamW, Adagrad do)."""
    # type[Optimizer] is hashable; mypy reads Optimizer.__hash__ as an instance method
    return _torch_fused_probe(cls, tuple(sorted(kw.items())))  # type: ignore[arg-type]


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
