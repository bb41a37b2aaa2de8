"""The CUDA backend: the Triton kernels behind the reference updates' exact signatures.

`KERNELS[name]`, for every formula made so far (`FORMULAS`), is a drop-in for the
formula's reference update (same arguments, same in-place effect) that updates the whole
param group in one launch of the kernel written from the formula (`_triton_kernels`) and
one pass over memory. Per step the host builds one small int64 table (the
hyperparameters, placed by name, and per tensor its addresses, size and terms; see
`_triton_kernels`) and uploads it with one copy; the chunk plan (which tensor and which
elements each program updates) is kept on the device in a `Layout` while the group's
tensors stay where they are.

Extra keywords `grad_scale` and `found_inf` (0-d or 1-element float tensors on the
device, as `torch.amp.GradScaler` makes them) unscale the gradients and skip a
non-finite step inside the kernel, without a host synchronisation.

Tests run these kernels in Triton's interpreter (TRITON_INTERPRET=1) on CPU
tensors by setting `DEVICE_TYPE = "cpu"`; nothing else changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from optimlab.kernels import _checks
from optimlab.kernels._generate import Kernels, Names
from optimlab.kernels.formula import FORMULAS, Formula

try:
    import triton.language as tl

    from optimlab.kernels import _triton_kernels as k
except ImportError as e:  # kernels.fused_layout reports this as the reason
    raise ImportError(f"triton is not installed ({e}); install the extra: "
                      "pip install 'optimlab[triton]'") from e

# The device whose tensors these kernels update: "cuda"; the interpreter tests set "cpu".
DEVICE_TYPE = "cuda"
# Storage dtypes (arithmetic is float32); complex64 arrives as float32 (re, im) pairs.
TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}
ACCEPTED = (*TL_DTYPES, torch.complex64)
# Elements per program: 16 per thread at 4 warps, four 16-byte vectors of float32.
# Chosen, not tuned: no GPU has measured it yet. Multiply-adds are fused (FMA: one
# rounding), as nvcc compiles torch's own CUDA kernels.
BLOCK = 2048
NUM_WARPS = 4
# kernels.unscales: GradScaler's `grad_scale` is divided out inside these kernels
UNSCALES = True


@dataclass(eq=False)
class Layout:
    """A param group as the kernels see it, reused while `_checks.still_holds`."""

    params: list[torch.Tensor]
    dtype: torch.dtype     # storage dtype of the kernels (complex64: float32)
    sizes: np.ndarray      # real elements per tensor
    chunks: torch.Tensor   # int64 [C, 2] on the device: (tensor index, first element)
    w: np.ndarray          # the parameters' addresses when checked
    block: int


def layout(kind: str, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None],
           previous: Layout | None = None) -> Layout | str:
    """The group's Layout (`previous` while it still holds), or why the kernels cannot run."""
    if previous is not None and previous.block != BLOCK:  # the tests change BLOCK
        previous = None
    return _checks.layout(params, grads, previous, _params_unavailable, _layout)


def _params_unavailable(params: Sequence[torch.Tensor]) -> str | None:
    return _checks.params_unavailable(
        params, ACCEPTED, "the fused CUDA kernels handle float32, bfloat16, float16 and "
        "complex64", lambda p: p.device.type == DEVICE_TYPE and p.device == params[0].device)


def _layout(params: Sequence[torch.Tensor], w: np.ndarray) -> Layout:
    dtype = params[0].dtype
    pair = 2 if dtype.is_complex else 1  # a complex element is two reals
    sizes = np.array([p.numel() * pair for p in params], np.int64)
    per = (sizes + BLOCK - 1) // BLOCK
    tensor = np.repeat(np.arange(len(params), dtype=np.int64), per)
    first = np.arange(per.sum(), dtype=np.int64) - np.repeat(np.cumsum(per) - per, per)
    chunks = torch.from_numpy(np.stack([tensor, first * BLOCK], axis=1).copy())
    return Layout(list(params), dtype.to_real(), sizes, chunks.to(params[0].device), w, BLOCK)


def _addresses(tensors: Sequence[torch.Tensor | None], lay: Layout, what: str) -> np.ndarray:
    """Data addresses of state tensors, checked against their parameters (the kernel trusts
    them, and a state_dict from elsewhere may hold anything)."""
    device = lay.params[0].device
    for i, t in enumerate(tensors):
        if t is None or t.dtype != lay.dtype or not t.is_contiguous() \
                or t.numel() != lay.sizes[i] or t.device != device:
            found = "missing" if t is None else \
                f"{t.dtype} on {t.device}, {t.numel()} elements, contiguous={t.is_contiguous()}"
            raise RuntimeError(f"fused kernel: {what} of parameter {i} is {found}; needed: "
                               f"{lay.dtype} on {device}, {lay.sizes[i]} elements, "
                               "contiguous (use fused=False for this state)")
    return _checks.pointers(tensors)  # type: ignore[arg-type]


def _group(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
           layout: Layout | None) -> tuple[Layout, np.ndarray]:
    """The group's Layout and the gradients' addresses (`_layout` when called directly)."""
    if layout is None:
        reason = _params_unavailable(params)
        if reason is not None:
            raise RuntimeError(f"fused kernel: {reason}")
        layout = _layout(params, _checks.pointers(params))
    return layout, _addresses(grads, layout, "the gradient")


def _bits(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Floats as the int64 bit patterns of float64 (how the table carries them)."""
    return np.asarray(values, np.float64).view(np.int64)


def _launch(kernel: Any, lay: Layout, hp: Sequence[float], addresses: list[np.ndarray],
            extra: list[np.ndarray], grad_scale: torch.Tensor | None,
            found_inf: torch.Tensor | None, **flags: bool) -> None:
    """Upload [hp, per tensor: `addresses` then `extra`] and run `kernel` over the chunk plan
    with these flags."""
    if lay.chunks.shape[0] == 0:  # only empty tensors
        return
    device = lay.chunks.device
    columns = [*addresses, *extra]
    rows = np.stack(columns, axis=1).reshape(-1)
    table = torch.from_numpy(np.concatenate([_bits(hp), rows])).to(device, non_blocking=True)
    scale, inf = (_amp_tensor(x, device, name) for x, name in ((grad_scale, "grad_scale"),
                                                                 (found_inf, "found_inf")))
    # Triton launches on the current device: make it the parameters' (cuda:1, ...)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        kernel[(lay.chunks.shape[0],)](
            lay.chunks, table, table if scale is None else scale, table if inf is None else inf,
            DTYPE=TL_DTYPES[lay.dtype], BLOCK=lay.block,
            ALIGNED=not any((a % 16).any() for a in addresses), HAS_SCALE=scale is not None,
            HAS_INF=inf is not None, num_warps=NUM_WARPS, enable_fp_fusion=True, **flags)


def _amp_tensor(x: torch.Tensor | None, device: torch.device,
                name: str) -> torch.Tensor | None:
    if x is None:
        return None
    if x.numel() != 1 or x.device != device or x.dtype != torch.float32:
        raise RuntimeError(f"fused kernel: Invalid {name}: {x.dtype} with {x.numel()} "
                           f"elements on {x.device}; needed: one float32 on {device}")
    return x


def _unused(n: int) -> np.ndarray:
    """Addresses of a state the flags leave out: never dereferenced."""
    return np.zeros(n, np.int64)


def _update(name: str, params: list[torch.Tensor], grads: list[torch.Tensor], *lists: Any,
            layout: Layout | None = None, grad_scale: torch.Tensor | None = None,
            found_inf: torch.Tensor | None = None, **kw: Any) -> None:
    """Formula `name`'s update of one param group, in one launch of its kernel."""
    formula = FORMULAS[name]
    fused = k.kernels(formula, kw)
    lay, g = _group(params, grads, layout)
    count = len(formula.states)
    states = [ts if isinstance(ts, list) else list(ts) for ts in lists[:count]]
    steps = list(lists[count]) if len(lists) > count else None
    if steps is None and formula.terms is not None:  # before the lazy states are made
        steps = formula.first_steps(states, len(params))
    terms = _terms(formula, fused.names, kw, steps)
    flags, scalars = formula.flags(kw), formula.scalars(kw)
    hp = [-1.0 if kw.get("maximize") else 1.0, *(scalars[c] for c in fused.names.columns)]
    _launch(fused.kernel, lay, hp, [lay.w, g, *_states(formula, lay, params, states, flags)],
            [lay.sizes, *terms], grad_scale, found_inf,
            **{arg: bool(flags[flag]) for arg, flag in zip(fused.flags, fused.names.flags)})


def _states(formula: Formula, lay: Layout, params: Sequence[torch.Tensor],
            states: list[list[Any]], flags: dict[str, bool]) -> list[np.ndarray]:
    """The state tensors' addresses, checked (`_unused` for those the flags leave out); lazy
    states missing on their first step are made here, zero."""
    out = []
    for name, ts, on in zip(formula.states, states, formula.used(flags)):
        if not on:
            out.append(_unused(len(params)))
            continue
        if name in formula.lazy:
            _checks.first_buffers(ts, params, torch.zeros_like)
        out.append(_addresses(ts, lay, formula.keys.get(name, name)))
    return out


def _terms(formula: Formula, n: Names, kw: dict[str, Any], steps: list[Any] | None
           ) -> list[np.ndarray]:
    """Per term, its value at each tensor's t, worked out in float64 once per distinct t,
    as the table carries it."""
    if formula.terms is None or steps is None:
        return []
    if steps.count(steps[0]) == len(steps):  # as usual, one t for the group
        at = formula.terms(kw, steps[0])
        return [np.full(len(steps), b) for b in _bits([float(at[term]) for term in n.terms])]
    each = {t: formula.terms(kw, t) for t in set(steps)}
    return [_bits([float(each[t][term]) for t in steps]) for term in n.terms]


# name -> the fused update of formula `name`, with the keywords `layout`, `grad_scale` and
# `found_inf` besides the reference update's
KERNELS: Mapping[str, Callable[..., None]] = Kernels(_update)
