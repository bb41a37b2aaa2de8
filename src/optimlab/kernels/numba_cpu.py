"""The CPU backend: the numba kernels behind the reference updates' exact signatures.

Each function here is a drop-in for `optimlab.optim.<kind>_reference`: same
arguments, same in-place effect, one pass over memory. It gathers the tensors'
addresses (checking dtype, contiguity and size, because the kernel writes raw
memory), turns the hyperparameters into an array of the tensors' dtype and
runs the kernel once per thread, each on an equal share of the chunks. What
does not change between steps (sizes, the chunk plan, the dtype) is kept in a
`Layout` that `layout` rechecks cheaply every step and rebuilds when the
parameters change (other tensors, another address, no longer contiguous). The
thread count follows `torch.get_num_threads()`, so one knob (`OMP_NUM_THREADS`
or `torch.set_num_threads`) sets it for torch and for us. No temporaries proportional to the
model are allocated; SGD's momentum buffers are created on their first step,
as state.
"""

from __future__ import annotations

import itertools
import operator
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from optimlab.kernels import _checks
from optimlab.kernels import _numba_kernels as k
from optimlab.optim.adagrad import decayed_lr
from optimlab.optim.adam import corrections

DTYPES: dict[torch.dtype, np.dtype] = {torch.float32: np.dtype(np.float32),
                                     torch.float64: np.dtype(np.float64)}
# Complex parameters reach the kernels as real (..., 2) views of these dtypes.
ACCEPTED = (torch.float32, torch.float64, torch.complex64, torch.complex128)
# Fewest elements worth a thread: waking one costs ~20-50 µs, about what a
# core needs to stream this many elements of Adam.
MIN_PER_THREAD = 1 << 17
SHARES_PER_THREAD = 8

_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)  # (pid, workers): a forked child needs its own threads


def _workers(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    if _pool is None or _pool_key != (os.getpid(), workers):
        _pool = ThreadPoolExecutor(workers, thread_name_prefix="optimlab-fused")
        _pool_key = (os.getpid(), workers)
    return _pool


@dataclass(eq=False)
class Layout:
    """A param group as the kernels see it, checked once and reused while it still holds.

    It holds while the group has the same tensors (by identity), at the same
    addresses, all contiguous: their dtype, device and size cannot have
    changed then, except by writing through `.data` a view of another dtype
    at the same address, which nothing in torch does on its own.
    """

    params: list[torch.Tensor]
    dtype: np.dtype      # element type of the kernels (complex tensors: their real part)
    sizes: np.ndarray    # real elements per tensor
    tensor: np.ndarray   # the work plan of `k.plan`: tensor index and first element per chunk
    first: np.ndarray
    w: np.ndarray        # the parameters' addresses when checked
    total: int
    # state name -> (its tensors, their addresses, as a list too) when last checked by
    # `_addresses`
    states: dict[str, tuple[list[torch.Tensor], np.ndarray, list[int]]] = field(
        default_factory=dict)


def _run(kernel: Callable[..., Any], layout: Layout, *args: Any) -> None:
    """kernel over all chunks, in shares that this thread and the pool's take in turn.

    Several shares per thread, taken first come first served: on a shared
    machine a thread that is descheduled for a while delays only its share.
    """
    tensor, first, sizes = layout.tensor, layout.first, layout.sizes
    threads = max(1, min(torch.get_num_threads(), layout.total // MIN_PER_THREAD))
    if threads == 1:
        kernel(0, tensor.size, tensor, first, sizes, *args)
        return
    shares = min(tensor.size, threads * SHARES_PER_THREAD)
    bounds = np.linspace(0, tensor.size, shares + 1).astype(np.int64)
    tickets = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        while (s := next(tickets)) < shares:
            kernel(bounds[s], bounds[s + 1], tensor, first, sizes, *args)

    futures = [_workers(threads - 1).submit(work) for _ in range(threads - 1)]
    work()
    for f in futures:
        f.result()


def layout(kind: str, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None],
           previous: Layout | None = None) -> Layout | str:
    """The group's Layout (`previous` while it still holds), or why the kernels cannot run.

    Runs every step, so it checks only what can change between steps; the
    kernels' own checks of the state tensors come at the call.
    """
    return _checks.layout(params, grads, previous, _params_unavailable, _layout)


def _params_unavailable(params: Sequence[torch.Tensor]) -> str | None:
    return _checks.params_unavailable(
        params, ACCEPTED, "the fused CPU kernels handle float32, float64, complex64 and "
        "complex128", lambda p: p.is_cpu)


def _layout(params: Sequence[torch.Tensor], w: np.ndarray) -> Layout:
    """The Layout of parameters that `_params_unavailable` accepted (or their real views)."""
    dtype = params[0].dtype
    pair = 2 if dtype.is_complex else 1  # a complex element is two reals
    sizes = np.array([p.numel() * pair for p in params], np.int64)
    tensor, first = k.plan(sizes)
    return Layout(list(params), DTYPES[dtype.to_real()], sizes, tensor, first, w,
                  int(sizes.sum()))


def _addresses(tensors: Sequence[torch.Tensor | None], lay: Layout, dtype: torch.dtype,
               what: str) -> np.ndarray:
    """Data addresses of state tensors, checked against their parameters (the kernel trusts
    them, and a state_dict from elsewhere may hold anything). Checked in full when they
    are other tensors than last step's; the same tensors are only rechecked for what can
    change (address, contiguity), as the parameters are (`_checks.still_holds`)."""
    kept = lay.states.get(what)
    if (kept is not None and len(kept[0]) == len(tensors)
            and all(map(operator.is_, kept[0], tensors))
            and _checks.addresses(tensors) == kept[2]  # type: ignore[arg-type]  # none is None
            and all(map(torch.Tensor.is_contiguous, tensors))):  # type: ignore[arg-type]
        return kept[1]
    w = _checked(tensors, lay.sizes, dtype, what)
    lay.states[what] = (list(tensors), w, w.tolist())  # type: ignore[arg-type]
    return w


def _checked(tensors: Sequence[torch.Tensor | None], sizes: np.ndarray, dtype: torch.dtype,
             what: str) -> np.ndarray:
    """`_addresses`'s full check."""
    present = [t for t in tensors if t is not None]
    if (len(present) == len(tensors) and all(t.dtype == dtype for t in present)
            and all(map(torch.Tensor.is_contiguous, present))
            and np.array_equal(np.fromiter(map(torch.Tensor.numel, present), np.int64,
                                           len(present)), sizes)):
        return _checks.pointers(present)
    i, t = next((i, t) for i, t in enumerate(tensors) if t is None or t.dtype != dtype
                or not t.is_contiguous() or t.numel() != sizes[i])
    raise RuntimeError(f"fused kernel: {what} of parameter {i} is {_describe(t)}; "
                       f"needed: {dtype}, {sizes[i]} elements, contiguous (use "
                       "fused=False for this state)")


def _describe(t: torch.Tensor | None) -> str:
    if t is None:
        return "missing"
    return f"{t.dtype}, {t.numel()} elements, contiguous={t.is_contiguous()}"


def _group(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
           layout: Layout | None) -> tuple[Layout, np.ndarray]:
    """The group's Layout and the gradients' addresses.

    `layout` comes from `layout()` this step, which checked the parameters and
    the gradients' contiguity; without one (a direct call) it is built here.
    torch keeps a grad's shape and dtype those of its parameter.
    """
    if layout is None:
        reason = _params_unavailable(params) or _checks.subclass(grads, "the gradient of parameter")
        if reason is not None:
            raise RuntimeError(f"fused kernel: {reason}")
        layout = _layout(params, _checks.pointers(params))
    return layout, _checks.pointers(grads)


def _unused(n: int) -> np.ndarray:
    """Addresses for a state the options leave out: never dereferenced."""
    return np.zeros(n, np.int64)


# kind -> kernel: every function decorated with `@_kernel`, under its own name
KERNELS: dict[str, Callable[..., None]] = {}


def _kernel(fn: Callable[..., None]) -> Callable[..., None]:
    KERNELS[fn.__name__] = fn
    return fn


@_kernel
def sgd(params: list[torch.Tensor], grads: list[torch.Tensor],
        bufs: list[torch.Tensor | None], *, lr: float, momentum: float,
        dampening: float, weight_decay: float, nesterov: bool, maximize: bool,
        layout: Layout | None = None) -> None:
    """Fused `sgd_reference`. `bufs[i] is None` on the first step: created here (v₁ = g)."""
    lay, g = _group(params, grads, layout)
    heavy_ball = momentum != 0
    # the kernel writes v₁ = g, so a new buffer need not be filled
    fresh = _checks.first_buffers(bufs, params, torch.empty_like) if heavy_ball \
        else np.zeros(len(params), np.bool_)
    v = _addresses(bufs, lay, params[0].dtype, "momentum_buffer") if heavy_ball \
        else _unused(len(params))
    hp = np.array([-lr, momentum, 1 - dampening, weight_decay, -1 if maximize else 1], lay.dtype)
    _run(k.sgd, lay, lay.w, g, v, fresh, hp, heavy_ball, nesterov)


@_kernel
def momentum(params: list[torch.Tensor], grads: list[torch.Tensor],
             vs: list[torch.Tensor], *, lr: float, momentum: float,
             weight_decay: float, nesterov: bool, maximize: bool,
             layout: Layout | None = None) -> None:
    """Fused `momentum_reference`."""
    lay, g = _group(params, grads, layout)
    v = _addresses(vs, lay, params[0].dtype, "momentum_buffer")
    hp = np.array([-lr, momentum, 1 - momentum, weight_decay, -1 if maximize else 1], lay.dtype)
    _run(k.momentum, lay, lay.w, g, v, hp, nesterov)


@_kernel
def rmsprop(params: list[torch.Tensor], grads: list[torch.Tensor],
            ss: list[torch.Tensor], gs: list[torch.Tensor | None],
            bufs: list[torch.Tensor | None], *, lr: float, alpha: float, eps: float,
            weight_decay: float, momentum: float, centered: bool, maximize: bool,
            layout: Layout | None = None) -> None:
    """Fused `rmsprop_reference`."""
    lay, g = _group(params, grads, layout)
    dtype, n = params[0].dtype, len(params)
    s = _addresses(ss, lay, dtype, "square_avg")
    m = _addresses(gs, lay, dtype, "grad_avg") if centered else _unused(n)
    b = _addresses(bufs, lay, dtype, "momentum_buffer") if momentum > 0 else _unused(n)
    hp = np.array([-lr, alpha, 1 - alpha, eps, weight_decay, momentum,
                   -1 if maximize else 1], lay.dtype)
    _run(k.rmsprop, lay, lay.w, g, s, m, b, hp, centered, momentum > 0)


@_kernel
def adam(params: list[torch.Tensor], grads: list[torch.Tensor],
         vs: list[torch.Tensor], ss: list[torch.Tensor],
         s_maxes: list[torch.Tensor | None], steps: list[int], *, lr: float,
         beta1: float, beta2: float, eps: float, weight_decay: float,
         decoupled: bool, amsgrad: bool, maximize: bool, bias_correction: bool = True,
         layout: Layout | None = None) -> None:
    """Fused `adam_reference` (Adam and AdamW); bias corrections per tensor, in float64 first."""
    lay, g = _group(params, grads, layout)
    dtype, dt = params[0].dtype, lay.dtype
    v = _addresses(vs, lay, dtype, "exp_avg")
    s = _addresses(ss, lay, dtype, "exp_avg_sq")
    s_max = _addresses(s_maxes, lay, dtype, "max_exp_avg_sq") if amsgrad \
        else _unused(len(params))
    if steps.count(steps[0]) == len(steps):  # as usual, one t for the group: one correction
        bc1_, bc2_ = corrections(beta1, beta2, steps[0], bias_correction)
        step_size, bc2 = np.full(len(steps), -lr / bc1_, dt), np.full(len(steps), bc2_, dt)
    else:
        bcs = [corrections(beta1, beta2, t, bias_correction) for t in steps]
        step_size = np.array([-lr / bc1 for bc1, _ in bcs], dt)
        bc2 = np.array([bc2 for _, bc2 in bcs], dt)
    decay = 1 - lr * weight_decay if decoupled else 1.0
    hp = np.array([beta1, 1 - beta1, beta2, 1 - beta2, eps, weight_decay,
                   -1 if maximize else 1, decay], dt)
    _run(k.adam, lay, lay.w, g, v, s, s_max, step_size, bc2, hp, decoupled, amsgrad)


@_kernel
def adagrad(params: list[torch.Tensor], grads: list[torch.Tensor], ss: list[torch.Tensor],
            steps: list[int], *, lr: float, lr_decay: float, eps: float, weight_decay: float,
            maximize: bool, layout: Layout | None = None) -> None:
    """Fused `adagrad_reference`; the decayed η per tensor, in float64 first."""
    lay, g = _group(params, grads, layout)
    s = _addresses(ss, lay, params[0].dtype, "sum")
    step_size = np.array([-decayed_lr(lr, lr_decay, t) for t in steps], lay.dtype)
    hp = np.array([eps, weight_decay, -1 if maximize else 1], lay.dtype)
    _run(k.adagrad, lay, lay.w, g, s, step_size, hp)
