"""What every backend checks about a param group before its kernels touch raw memory."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def layout(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None],
           previous: Any, unavailable: Callable[[Sequence[torch.Tensor]], str | None],
           build: Callable[[Sequence[torch.Tensor], np.ndarray], Any]) -> Any:
    """A backend's layout of the group: `previous` (which has `.params` and their
    addresses `.w`) while it still holds, else `build(params, addresses)` once
    `unavailable(params)` finds nothing wrong; or the reason string. Runs every step, so
    it checks only what can change between steps."""
    w = addresses(params)
    if previous is not None and still_holds(previous.params, previous.w.tolist(), params, w):
        found = previous
    else:
        found = unavailable(params) or build(params, np.array(w, np.int64))
    return grads_unavailable(params, grads) or found


def first_buffers(bufs: list[torch.Tensor | None], params: Sequence[torch.Tensor],
                  make: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """Create SGD's heavy-ball buffers missing on their first step (`make(param)`, the
    backend's choice of fill); which were created, for the kernel's v₁ = g."""
    fresh = np.zeros(len(params), np.bool_)
    for i, b in enumerate(bufs):
        if b is None:
            bufs[i] = make(params[i])
            fresh[i] = True
    return fresh


def pointers(tensors: Sequence[torch.Tensor]) -> np.ndarray:
    """The tensors' data addresses, int64."""
    return np.fromiter(map(torch.Tensor.data_ptr, tensors), np.int64, len(tensors))


def addresses(tensors: Sequence[torch.Tensor]) -> list[int]:
    """The tensors' data addresses as a list: compared with `==` in a fraction of what
    building and comparing arrays costs at a few tensors, as every step does."""
    return [*map(torch.Tensor.data_ptr, tensors)]


def still_holds(kept: Sequence[torch.Tensor], kept_w: list[int],
                params: Sequence[torch.Tensor], w: list[int]) -> bool:
    """A layout checked for `kept` (at addresses `kept_w`) holds for `params` at `w`: the
    same tensors at the same addresses, all contiguous. Their dtype, device and size cannot
    have changed then, except by writing through `.data` a view of another dtype at the
    same address, which nothing in torch does on its own."""
    return (len(kept) == len(params) and all(map(operator.is_, kept, params))
            and kept_w == w and all(map(torch.Tensor.is_contiguous, params)))


# The tensor types whose memory the kernels may read and write.
PLAIN = (torch.Tensor, torch.nn.Parameter)


def holds(previous: Any, params: Sequence[torch.Tensor],
          grads: Sequence[torch.Tensor | None]) -> bool:
    """Whether `layout` would return `previous` (which also has `.addresses`, its `w` as a
    list) for these parameters and gradients, every gradient present and a plain tensor:
    its checks as a few C-level passes, for a step that replays the last one (a sparse
    gradient is not contiguous)."""
    return ([*map(type, grads)].count(torch.Tensor) == len(params)
            and all(map(torch.Tensor.is_contiguous, grads))  # type: ignore[arg-type]
            and still_holds(previous.params, previous.addresses, params, addresses(params)))


def subclass(tensors: Sequence[torch.Tensor | None], what: str) -> str | None:
    """Why the kernels cannot take a tensor subclass (FSDP2's DTensor, …), if one is here:
    its data is not the plain strided memory the kernels write (a DTensor's data_ptr is
    not its shard's), so the foreach path, which dispatches through the subclass, runs."""
    for i, t in enumerate(tensors):
        if t is not None and type(t) not in PLAIN:
            return _is_subclass(f"{what} {i}", t)
    return None


def _is_subclass(what: str, t: torch.Tensor) -> str:
    return (f"{what} is a {type(t).__name__}, a tensor subclass; the fused kernels take "
            "plain tensors")


def params_unavailable(params: Sequence[torch.Tensor], accepted: Sequence[torch.dtype],
                       handles: str, on_device: Callable[[torch.Tensor], bool]) -> str | None:
    """Why the kernels cannot take these parameters (None when they can): a tensor subclass,
    a dtype outside `accepted` (`handles` names them), mixed dtypes, another device, not
    contiguous."""
    found = subclass(params, "parameter")
    if found:
        return found
    dtype = params[0].dtype
    if dtype not in accepted:
        return f"parameter 0 has dtype {dtype}; {handles}"
    for i, p in enumerate(params):
        if p.dtype != dtype:
            return (f"one param group mixes dtypes ({dtype} and {p.dtype}); the fused kernel "
                    "needs one dtype per param group")
        if not on_device(p):
            return f"parameter {i} is on {p.device}, parameter 0 on {params[0].device}"
        if not p.is_contiguous():
            return f"parameter {i} (shape {tuple(p.shape)}) is not contiguous"
    return None


def grads_unavailable(params: Sequence[torch.Tensor],
                      grads: Sequence[torch.Tensor | None]) -> str | None:
    for i, g in enumerate(grads):  # every step: one pass
        if g is None:
            continue
        if type(g) not in PLAIN:
            return _is_subclass(f"the gradient of parameter {i}", g)
        if not g.is_contiguous():
            return (f"the gradient of parameter {i} (shape {tuple(params[i].shape)}) "
                    "is not contiguous")
    return None
