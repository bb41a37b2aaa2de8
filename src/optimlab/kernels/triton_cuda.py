"""The CUDA backend: the Triton kernels behind the reference updates' exact signatures.

Each function here is a drop-in for `optimlab.optim.<kind>_reference` (same
arguments, same in-place effect) that updates the whole param group in one kernel
launch and one pass over memory. Per step the host builds one small int64 table
(the hyperparameters, and per tensor its addresses, size and own hyperparameters;
see `_triton_kernels`) and uploads it with one copy; the chunk plan (which tensor
and which elements each program updates) is kept on the device in a `Layout` while
the group's tensors stay where they are.

Extra keywords `grad_scale` and `found_inf` (0-d or 1-element float tensors on the
device, as `torch.amp.GradScaler` makes them) unscale the gradients and skip a
non-finite step inside the kernel, without a host synchronisation.

Tests run these kernels in Triton's interpreter (TRITON_INTERPRET=1) on CPU
tensors by setting `DEVICE_TYPE = "cpu"`; nothing else changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from optimlab.kernels import _checks
from optimlab.kernels.scalars import corrections, decayed_lr

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
            found_inf: torch.Tensor | None, **options: Any) -> None:
    """Upload [hp, per tensor: `addresses` then `extra`] and run `kernel` over the chunk plan."""
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
            DTYPE=TL_DTYPES[lay.dtype], NHP=len(hp), ROW=len(columns), BLOCK=lay.block,
            ALIGNED=not any((a % 16).any() for a in addresses), HAS_SCALE=scale is not None,
            HAS_INF=inf is not None, num_warps=NUM_WARPS, enable_fp_fusion=True, **options)


def _amp_tensor(x: torch.Tensor | None, device: torch.device,
                name: str) -> torch.Tensor | None:
    if x is None:
        return None
    if x.numel() != 1 or x.device != device or x.dtype != torch.float32:
        raise RuntimeError(f"fused kernel: Invalid {name}: {x.dtype} with {x.numel()} "
                           f"elements on {x.device}; needed: one float32 on {device}")
    return x


def _unused(n: int) -> np.ndarray:
    """Addresses of a state the options leave out: never dereferenced."""
    return np.zeros(n, np.int64)


def sgd(params: list[torch.Tensor], grads: list[torch.Tensor],
        bufs: list[torch.Tensor | None], *, lr: float, momentum: float,
        dampening: float, weight_decay: float, nesterov: bool, maximize: bool,
        layout: Layout | None = None, grad_scale: torch.Tensor | None = None,
        found_inf: torch.Tensor | None = None) -> None:
    """Fused `sgd_reference`. `bufs[i] is None` on the first step: created here (v₁ = g)."""
    lay, g = _group(params, grads, layout)
    heavy_ball = momentum != 0
    # a new buffer is loaded but unused (v₁ = g): zeros keep that load harmless
    fresh = (_checks.first_buffers(bufs, params, torch.zeros_like) if heavy_ball
             else np.zeros(len(params), np.bool_)).astype(np.int64)
    v = _addresses(bufs, lay, "momentum_buffer") if heavy_ball else _unused(len(params))
    hp = [lr, momentum, 1 - dampening, weight_decay, -1 if maximize else 1]
    _launch(k.sgd, lay, hp, [lay.w, g, v], [lay.sizes, fresh], grad_scale, found_inf,
            HEAVY_BALL=heavy_ball, NESTEROV=bool(nesterov))


def momentum(params: list[torch.Tensor], grads: list[torch.Tensor],
             vs: list[torch.Tensor], *, lr: float, momentum: float,
             weight_decay: float, nesterov: bool, maximize: bool,
             layout: Layout | None = None, grad_scale: torch.Tensor | None = None,
             found_inf: torch.Tensor | None = None) -> None:
    """Fused `momentum_reference`."""
    lay, g = _group(params, grads, layout)
    v = _addresses(vs, lay, "momentum_buffer")
    hp = [lr, momentum, 1 - momentum, weight_decay, -1 if maximize else 1]
    _launch(k.momentum, lay, hp, [lay.w, g, v], [lay.sizes], grad_scale, found_inf,
            NESTEROV=bool(nesterov))


def rmsprop(params: list[torch.Tensor], grads: list[torch.Tensor],
            ss: list[torch.Tensor], gs: list[torch.Tensor | None],
            bufs: list[torch.Tensor | None], *, lr: float, alpha: float, eps: float,
            weight_decay: float, momentum: float, centered: bool, maximize: bool,
            layout: Layout | None = None, grad_scale: torch.Tensor | None = None,
            found_inf: torch.Tensor | None = None) -> None:
    """Fused `rmsprop_reference`."""
    lay, g = _group(params, grads, layout)
    n = len(params)
    s = _addresses(ss, lay, "square_avg")
    m = _addresses(gs, lay, "grad_avg") if centered else _unused(n)
    b = _addresses(bufs, lay, "momentum_buffer") if momentum > 0 else _unused(n)
    hp = [lr, alpha, 1 - alpha, eps, weight_decay, momentum, -1 if maximize else 1]
    _launch(k.rmsprop, lay, hp, [lay.w, g, s, m, b], [lay.sizes], grad_scale, found_inf,
            CENTERED=bool(centered), HEAVY_BALL=momentum > 0)


def adam(params: list[torch.Tensor], grads: list[torch.Tensor],
         vs: list[torch.Tensor], ss: list[torch.Tensor],
         s_maxes: list[torch.Tensor | None], steps: list[int], *, lr: float,
         beta1: float, beta2: float, eps: float, weight_decay: float,
         decoupled: bool, amsgrad: bool, maximize: bool, bias_correction: bool = True,
         layout: Layout | None = None, grad_scale: torch.Tensor | None = None,
         found_inf: torch.Tensor | None = None) -> None:
    """Fused `adam_reference` (Adam and AdamW); bias corrections per tensor, in float64."""
    lay, g = _group(params, grads, layout)
    v = _addresses(vs, lay, "exp_avg")
    s = _addresses(ss, lay, "exp_avg_sq")
    s_max = _addresses(s_maxes, lay, "max_exp_avg_sq") if amsgrad else _unused(len(params))
    t = np.asarray(steps, np.float64)
    bc1, bc2 = corrections(beta1, beta2, t, bias_correction)  # arrays, or 1.0 without
    step_size = _bits(-lr / (bc1 * np.ones_like(t)))
    bc2 = _bits(bc2 * np.ones_like(t))
    decay = 1 - lr * weight_decay if decoupled else 1.0
    hp = [beta1, 1 - beta1, beta2, 1 - beta2, eps, weight_decay, -1 if maximize else 1, decay]
    _launch(k.adam, lay, hp, [lay.w, g, v, s, s_max], [lay.sizes, step_size, bc2],
            grad_scale, found_inf, DECOUPLED=bool(decoupled), AMSGRAD=bool(amsgrad))


def adagrad(params: list[torch.Tensor], grads: list[torch.Tensor], ss: list[torch.Tensor],
            steps: list[int], *, lr: float, lr_decay: float, eps: float, weight_decay: float,
            maximize: bool, layout: Layout | None = None,
            grad_scale: torch.Tensor | None = None, found_inf: torch.Tensor | None = None
            ) -> None:
    """Fused `adagrad_reference`; the decayed η per tensor, in float64."""
    lay, g = _group(params, grads, layout)
    s = _addresses(ss, lay, "sum")
    step_size = _bits([-decayed_lr(lr, lr_decay, t) for t in steps])
    hp = [eps, weight_decay, -1 if maximize else 1]
    _launch(k.adagrad, lay, hp, [lay.w, g, s], [lay.sizes, step_size], grad_scale, found_inf)


# kind -> kernel, each under its own name (the name a specification gives as `kernel`)
KERNELS = {fn.__name__: fn for fn in (sgd, momentum, rmsprop, adam, adagrad)}
