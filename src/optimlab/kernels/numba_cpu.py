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
as state. `batched(kind, members)` runs the same kernels for K members of a
sweep over stacked tensors, one row of hyperparameters per member (`BatchedStep`).
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
from optimlab.kernels.scalars import corrections, decayed_lr

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
    # the row of the kernels' `hp` that each tensor reads (None: row 0, a group's one row)
    row: np.ndarray | None = None
    addresses: list[int] = field(init=False)  # `w` as a list, for `_checks.holds`
    zeros: np.ndarray = field(init=False)  # addresses of an unused state (never read)
    # two per-tensor arrays of `dtype` a kernel call may fill (Adam's bias corrections)
    scratch: tuple[np.ndarray, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.params)
        self.addresses = self.w.tolist()
        self.zeros = np.zeros(n, np.int64)
        if self.row is None:
            self.row = self.zeros
        self.scratch = (np.empty(n, self.dtype), np.empty(n, self.dtype))


def _run(kernel: Callable[..., Any], layout: Layout, *args: Any) -> None:
    """kernel over all chunks, in shares that this thread and the pool's take in turn.

    Several shares per thread, taken first come first served: on a shared
    machine a thread that is descheduled for a while delays only its share.
    """
    tensor, first, sizes, row = layout.tensor, layout.first, layout.sizes, layout.row
    if layout.total < 2 * MIN_PER_THREAD:  # one thread whatever torch's count (most steps)
        kernel(0, tensor.size, tensor, first, sizes, row, *args)
        return
    threads = max(1, min(torch.get_num_threads(), layout.total // MIN_PER_THREAD))
    if threads == 1:
        kernel(0, tensor.size, tensor, first, sizes, row, *args)
        return
    shares = min(tensor.size, threads * SHARES_PER_THREAD)
    bounds = np.linspace(0, tensor.size, shares + 1).astype(np.int64)
    tickets = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        while (s := next(tickets)) < shares:
            kernel(bounds[s], bounds[s + 1], tensor, first, sizes, row, *args)

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
            and [*map(torch.Tensor.data_ptr, tensors)] == kept[2]  # type: ignore[arg-type]
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


def _unused(lay: Layout) -> np.ndarray:
    """Addresses for a state the options leave out: never dereferenced."""
    return lay.zeros


# Each kind's kernel call after the parameters' and gradients' addresses is its state
# tensors' addresses (`states`, checked in full when they are other tensors than last
# call's), the terms that change with the step counts (`terms`, per tensor) and
# its scalars (`scalars`: the hyperparameters as an array of the tensors' dtype, flags),
# worked out from the reference's keyword arguments `kw`.
# The drop-in functions below run a kind in one call; `prepare` keeps one group's call
# between steps for an optimizer that replays its last step.
States = Callable[[Layout, Sequence[torch.Tensor], list[list[Any]], dict[str, Any]],
                  tuple[Any, ...]]
Scalars = Callable[[Layout, dict[str, Any]], tuple[Any, ...]]
# the terms that change with t, in float64 (floats; per-member arrays for the batched step)
Terms = Callable[[dict[str, Any], int], tuple[Any, ...]]


@dataclass(frozen=True)
class _Kind:
    kernel: Callable[..., Any]
    states: States
    scalars: Scalars
    # the arguments that choose which state tensors `states` takes (a prepared call holds
    # only while they do not change)
    structure: Callable[[dict[str, Any]], tuple[Any, ...]] = lambda kw: ()
    # `new_lr(scalars, kw)` writes the η of `kw` into `scalars`, the `hp` array, where
    # `scalars` put it (rounded to the dtype as np.array rounds it), for a new η alone
    new_lr: Callable[[tuple[Any, ...], dict[str, Any]], None] = lambda scalars, kw: None
    # the arguments that change with the step counts t, before the scalars (for the
    # kernels that take t): per tensor, each of these terms at its t
    terms: Terms | None = None


def _sign(kw: dict[str, Any]) -> int:
    return -1 if kw["maximize"] else 1


def _sgd_states(lay: Layout, params: Sequence[torch.Tensor], lists: list[list[Any]],
                kw: dict[str, Any]) -> tuple[Any, ...]:
    (bufs,) = lists
    if kw["momentum"] == 0:
        return _unused(lay), np.zeros(len(params), np.bool_)
    # the kernel writes v₁ = g, so a new buffer need not be filled
    fresh = _checks.first_buffers(bufs, params, torch.empty_like)
    return _addresses(bufs, lay, params[0].dtype, "momentum_buffer"), fresh


def _sgd_scalars(lay: Layout, kw: dict[str, Any]) -> tuple[Any, ...]:
    hp = np.array([[-kw["lr"], kw["momentum"], 1 - kw["dampening"], kw["weight_decay"],
                    _sign(kw)]], lay.dtype)
    return hp, kw["momentum"] != 0, kw["nesterov"]


def _negative_lr_first(scalars: tuple[Any, ...], kw: dict[str, Any]) -> None:
    scalars[0][0, 0] = -kw["lr"]


def _momentum_states(lay: Layout, params: Sequence[torch.Tensor], lists: list[list[Any]],
                     kw: dict[str, Any]) -> tuple[Any, ...]:
    return (_addresses(lists[0], lay, params[0].dtype, "momentum_buffer"),)


def _momentum_scalars(lay: Layout, kw: dict[str, Any]) -> tuple[Any, ...]:
    beta = kw["momentum"]
    hp = np.array([[-kw["lr"], beta, 1 - beta, kw["weight_decay"], _sign(kw)]], lay.dtype)
    return hp, kw["nesterov"]


def _rmsprop_states(lay: Layout, params: Sequence[torch.Tensor], lists: list[list[Any]],
                    kw: dict[str, Any]) -> tuple[Any, ...]:
    ss, gs, bufs = lists
    dtype = params[0].dtype
    return (_addresses(ss, lay, dtype, "square_avg"),
            _addresses(gs, lay, dtype, "grad_avg") if kw["centered"] else _unused(lay),
            _addresses(bufs, lay, dtype, "momentum_buffer") if kw["momentum"] > 0
            else _unused(lay))


def _rmsprop_scalars(lay: Layout, kw: dict[str, Any]) -> tuple[Any, ...]:
    alpha = kw["alpha"]
    hp = np.array([[-kw["lr"], alpha, 1 - alpha, kw["eps"], kw["weight_decay"], kw["momentum"],
                    _sign(kw)]], lay.dtype)
    return hp, kw["centered"], kw["momentum"] > 0


def _adam_states(lay: Layout, params: Sequence[torch.Tensor], lists: list[list[Any]],
                 kw: dict[str, Any]) -> tuple[Any, ...]:
    vs, ss, s_maxes = lists
    dtype = params[0].dtype
    return (_addresses(vs, lay, dtype, "exp_avg"), _addresses(ss, lay, dtype, "exp_avg_sq"),
            _addresses(s_maxes, lay, dtype, "max_exp_avg_sq") if kw["amsgrad"]
            else _unused(lay))


def _adam_terms(kw: dict[str, Any], t: int) -> tuple[Any, ...]:
    """−η/(1−β₁ᵗ) and 1−β₂ᵗ."""
    bc1, bc2 = corrections(kw["beta1"], kw["beta2"], t, kw.get("bias_correction", True))
    return -kw["lr"] / bc1, bc2


def _adam_scalars(lay: Layout, kw: dict[str, Any]) -> tuple[Any, ...]:
    beta1, beta2, decoupled = kw["beta1"], kw["beta2"], kw["decoupled"]
    decay = 1 - kw["lr"] * kw["weight_decay"] if decoupled else 1.0
    hp = np.array([[beta1, 1 - beta1, beta2, 1 - beta2, kw["eps"], kw["weight_decay"],
                    _sign(kw), decay]], lay.dtype)
    return hp, decoupled, kw["amsgrad"]


def _adam_new_lr(scalars: tuple[Any, ...], kw: dict[str, Any]) -> None:
    if kw["decoupled"]:
        scalars[0][0, 7] = 1 - kw["lr"] * kw["weight_decay"]


def _adagrad_states(lay: Layout, params: Sequence[torch.Tensor], lists: list[list[Any]],
                    kw: dict[str, Any]) -> tuple[Any, ...]:
    return (_addresses(lists[0], lay, params[0].dtype, "sum"),)


def _adagrad_terms(kw: dict[str, Any], t: int) -> tuple[Any, ...]:
    """The decayed η, negated."""
    return (-decayed_lr(kw["lr"], kw["lr_decay"], t),)


def _per_tensor(terms: Terms, lay: Layout, steps: list[int], kw: dict[str, Any]
                ) -> tuple[np.ndarray, ...]:
    """A kind's `terms` per tensor at its t (`steps[i]`), worked out in float64 and then
    rounded to the tensors' dtype."""
    if steps.count(steps[0]) == len(steps):  # as usual, one t for the group: one value each
        values = terms(kw, steps[0])
        arrays = lay.scratch[:len(values)]
        for a, x in zip(arrays, values):
            a.fill(x)
        return arrays
    return tuple(np.array(column, lay.dtype) for column in zip(*(terms(kw, t) for t in steps)))


def _adagrad_scalars(lay: Layout, kw: dict[str, Any]) -> tuple[Any, ...]:
    return (np.array([[kw["eps"], kw["weight_decay"], _sign(kw)]], lay.dtype),)


_KINDS = {
    "sgd": _Kind(k.sgd, _sgd_states, _sgd_scalars, lambda kw: (kw["momentum"] != 0,),
                 _negative_lr_first),
    "momentum": _Kind(k.momentum, _momentum_states, _momentum_scalars,
                      new_lr=_negative_lr_first),
    "rmsprop": _Kind(k.rmsprop, _rmsprop_states, _rmsprop_scalars,
                     lambda kw: (kw["centered"], kw["momentum"] > 0), _negative_lr_first),
    "adam": _Kind(k.adam, _adam_states, _adam_scalars, lambda kw: (kw["amsgrad"],),
                  _adam_new_lr, terms=_adam_terms),
    "adagrad": _Kind(k.adagrad, _adagrad_states, _adagrad_scalars, terms=_adagrad_terms),
}


def _fused(kind: str, params: list[torch.Tensor], grads: list[torch.Tensor],
           lists: list[list[Any]], steps: list[int] | None, kw: dict[str, Any],
           layout: Layout | None) -> None:
    """One call of `kind`'s kernel on the group."""
    lay, g = _group(params, grads, layout)
    kind_ = _KINDS[kind]
    per_step = _per_tensor(kind_.terms, lay, steps, kw) \
        if kind_.terms is not None and steps is not None else ()
    _run(kind_.kernel, lay, lay.w, g, *kind_.states(lay, params, lists, kw), *per_step,
         *kind_.scalars(lay, kw))


class Prepared:
    """One group's kernel call kept between steps: the state tensors' addresses checked
    once, the scalars worked out again only when the arguments or the counts change.

    `holds(lists, kw)` says whether the call still takes these state tensors: the same
    ones, at the same addresses, contiguous, and arguments that choose the same ones
    (else prepare again); `run(grads, steps, kw)` then updates.
    """

    __slots__ = ("kind", "layout", "structure", "states", "tensors", "addresses", "kw",
                 "scalars", "per_step")

    def __init__(self, kind: _Kind, layout: Layout, structure: tuple[Any, ...],
                 states: tuple[Any, ...], tensors: list[torch.Tensor]):
        self.kind, self.layout, self.structure, self.states = kind, layout, structure, states
        self.tensors, self.addresses = tensors, _checks.addresses(tensors)
        self.kw: dict[str, Any] | None = None
        self.scalars: tuple[Any, ...] = ()
        self.per_step: tuple[Any, ...] = ()

    def holds(self, lists: list[list[Any]], kw: dict[str, Any]) -> bool:
        tensors = _present(lists)
        return (len(tensors) == len(self.tensors) and all(map(operator.is_, tensors, self.tensors))
                and _checks.addresses(tensors) == self.addresses
                and all(map(torch.Tensor.is_contiguous, tensors))
                and (kw is self.kw or self.kind.structure(kw) == self.structure))

    def run(self, grads: Sequence[torch.Tensor], steps: list[int] | None,
            kw: dict[str, Any], only_lr: bool = False) -> None:
        """One update; `only_lr`: `kw` differs from the last call's in η alone."""
        lay, kind = self.layout, self.kind
        if only_lr and self.kw is not None:
            kind.new_lr(self.scalars, kw)
        elif kw is not self.kw:
            self.scalars = kind.scalars(lay, kw)
        self.kw = kw
        if kind.terms is not None:
            assert steps is not None
            self.per_step = _per_tensor(kind.terms, lay, steps, kw)
        g = np.fromiter(map(torch.Tensor.data_ptr, grads), np.int64, len(grads))
        if lay.total < 2 * MIN_PER_THREAD:  # `_run`'s first case, without the call
            kind.kernel(0, lay.tensor.size, lay.tensor, lay.first, lay.sizes, lay.row, lay.w, g,
                        *self.states, *self.per_step, *self.scalars)
        else:
            _run(kind.kernel, lay, lay.w, g, *self.states, *self.per_step, *self.scalars)


def _present(lists: list[list[Any]]) -> list[torch.Tensor]:
    return [t for ts in lists for t in ts if t is not None]


def prepare(kind: str, params: Sequence[torch.Tensor], lists: list[list[Any]],
            kw: dict[str, Any], layout: Layout) -> Prepared | None:
    """Group `params`' call of `kind` (state tensors `lists`, arguments `kw` as the kernel
    functions take them) on `layout`, kept for the steps that replay this one; None when
    the call would first create state (SGD's heavy-ball buffers: the optimizer keeps
    those, so its full step runs then)."""
    kind_ = _KINDS[kind]
    copies = [list(ts) for ts in lists]
    states = kind_.states(layout, params, copies, kw)
    if any(a is not b for ts, cs in zip(lists, copies) for a, b in zip(ts, cs)):
        return None
    return Prepared(kind_, layout, kind_.structure(kw), states, _present(lists))


# K members of one optimizer over stacked parameters (every tensor with a leading dim K,
# `optimlab.optim.batched`): member k's slice of a stacked tensor, its row k, is
# contiguous, so the K·T slices of T tensors are the kernel's tensors, and slice (i, k)
# reads member k's row of `hp`. Each row is worked out by the kind's `scalars` from
# member k's keyword arguments, as its single run's would be.
@dataclass(eq=False)
class Stacked:
    """Stacked tensors as the kernels see them: `stacked` the T tensors (their states are
    checked against it, as a group's are) and `slices` their K·T rows, tensor by tensor,
    each with its member's `row`."""

    stacked: Layout
    slices: Layout
    index: np.ndarray    # the stacked tensor of each slice
    offsets: np.ndarray  # each slice's byte offset in its stacked tensor

    @property
    def params(self) -> list[torch.Tensor]:  # what `_checks.layout` rechecks every step
        return self.stacked.params

    @property
    def w(self) -> np.ndarray:
        return self.stacked.w

    def per_slice(self, a: np.ndarray) -> np.ndarray:
        """A per-tensor array of `states` per slice: addresses move to each row."""
        if a is self.stacked.zeros:
            return self.slices.zeros
        return a[self.index] + self.offsets if a.dtype == np.int64 else a[self.index]


def _stacked(params: Sequence[torch.Tensor], w: np.ndarray) -> Stacked | str:
    """The Stacked layout of parameters that `_params_unavailable` accepted."""
    if params[0].dtype not in DTYPES:
        return (f"parameter 0 has dtype {params[0].dtype}; the batched fused kernels handle "
                "float32 and float64")
    members = params[0].shape[0]
    stacked = _layout(params, w)
    index = np.repeat(np.arange(len(params)), members)
    row = np.tile(np.arange(members), len(params))
    per_member = stacked.sizes // members
    sizes = per_member[index]
    offsets = row * sizes * stacked.dtype.itemsize
    tensor, first = k.plan(sizes)
    slices = Layout(stacked.params, stacked.dtype, sizes, tensor, first, w[index] + offsets,
                    stacked.total, row=row)
    return Stacked(stacked, slices, index, offsets)


class BatchedStep:
    """Kind `kind`'s kernel stepping K members at once: `members[k]` is member k's keyword
    arguments as the kernel functions take them (its optimizer's own), the same for every
    step. Terms a member leaves out (SGD's momentum μ = 0 in a batch with momentum) run as
    zeros there: the kernel's options are those of any member (`structure`)."""

    def __init__(self, kind: str, members: Sequence[dict[str, Any]]):
        self.kind = _KINDS[kind]
        self.members = list(members)
        # the most of each value over the members: the options and states the kernel takes
        self.structure = {key: max(kw[key] for kw in members) for key in members[0]}
        self.columns = {key: np.array([kw[key] for kw in members], np.float64)
                        for key, x in members[0].items() if type(x) is float}
        self.layout: Stacked | None = None
        self.scalars: tuple[Any, ...] = ()

    def unavailable(self, params: Sequence[torch.Tensor],
                    grads: Sequence[torch.Tensor]) -> str | None:
        """Why the kernel cannot step these stacked tensors (None: it can, and the layout is
        ready for `run`)."""
        found = _checks.layout(params, grads, self.layout, _params_unavailable, _stacked)
        if isinstance(found, str):
            return found
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if g.shape != p.shape or g.dtype != p.dtype:
                return (f"gradient {i} is {g.dtype} of shape {tuple(g.shape)}; needed: its "
                        f"parameter's, {p.dtype} of shape {tuple(p.shape)}")
        if found is not self.layout:
            self.layout = found
            self.scalars = (np.concatenate([self.kind.scalars(found.stacked, kw)[0]
                                            for kw in self.members]),
                            *self.kind.scalars(found.stacked, self.structure)[1:])
        return None

    def run(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
            lists: list[list[Any]], t: int) -> None:
        """One step of every member (after `unavailable` found nothing): `lists` are the
        kind's state lists of stacked tensors (created here where the kind does), t counts
        from 1 for every member."""
        lay = self.layout
        assert lay is not None
        g = lay.per_slice(_checks.pointers(grads))
        states = self.kind.states(lay.stacked, params, lists, self.structure)
        per_step: tuple[np.ndarray, ...] = ()
        if self.kind.terms is not None:  # each term per member (or one for all), per slice
            row, dtype = lay.slices.row, lay.stacked.dtype
            assert row is not None  # a batch's slices always have their member rows
            per_step = tuple(x.astype(dtype)[row] if isinstance(x, np.ndarray)
                             else np.full(row.size, x, dtype)
                             for x in self.kind.terms({**self.structure, **self.columns}, t))
        _run(self.kind.kernel, lay.slices, lay.slices.w, g, *map(lay.per_slice, states),
             *per_step, *self.scalars)


def batched(kind: str, members: Sequence[dict[str, Any]]) -> BatchedStep:
    """Kind `kind`'s batched step for K members with these keyword arguments."""
    return BatchedStep(kind, members)


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
    _fused("sgd", params, grads, [bufs], None, dict(
        lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
        nesterov=nesterov, maximize=maximize), layout)


@_kernel
def momentum(params: list[torch.Tensor], grads: list[torch.Tensor],
             vs: list[torch.Tensor], *, lr: float, momentum: float,
             weight_decay: float, nesterov: bool, maximize: bool,
             layout: Layout | None = None) -> None:
    """Fused `momentum_reference`."""
    _fused("momentum", params, grads, [vs], None, dict(
        lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
        maximize=maximize), layout)


@_kernel
def rmsprop(params: list[torch.Tensor], grads: list[torch.Tensor],
            ss: list[torch.Tensor], gs: list[torch.Tensor | None],
            bufs: list[torch.Tensor | None], *, lr: float, alpha: float, eps: float,
            weight_decay: float, momentum: float, centered: bool, maximize: bool,
            layout: Layout | None = None) -> None:
    """Fused `rmsprop_reference`."""
    _fused("rmsprop", params, grads, [ss, gs, bufs], None, dict(
        lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
        centered=centered, maximize=maximize), layout)


@_kernel
def adam(params: list[torch.Tensor], grads: list[torch.Tensor],
         vs: list[torch.Tensor], ss: list[torch.Tensor],
         s_maxes: list[torch.Tensor | None], steps: list[int], *, lr: float,
         beta1: float, beta2: float, eps: float, weight_decay: float,
         decoupled: bool, amsgrad: bool, maximize: bool, bias_correction: bool = True,
         layout: Layout | None = None) -> None:
    """Fused `adam_reference` (Adam and AdamW)."""
    _fused("adam", params, grads, [vs, ss, s_maxes], steps, dict(
        lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
        decoupled=decoupled, amsgrad=amsgrad, maximize=maximize,
        bias_correction=bias_correction), layout)


@_kernel
def adagrad(params: list[torch.Tensor], grads: list[torch.Tensor], ss: list[torch.Tensor],
            steps: list[int], *, lr: float, lr_decay: float, eps: float, weight_decay: float,
            maximize: bool, layout: Layout | None = None) -> None:
    """Fused `adagrad_reference`."""
    _fused("adagrad", params, grads, [ss], steps, dict(
        lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay, maximize=maximize),
        layout)
