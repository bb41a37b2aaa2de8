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
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from optimlab.kernels import _checks
from optimlab.kernels import _numba_formula as _nf
from optimlab.kernels import _numba_kernels as k
from optimlab.kernels._generate import Kernels, Names, names
from optimlab.kernels.formula import FORMULAS, Formula

DTYPES: dict[torch.dtype, np.dtype] = {torch.float32: np.dtype(np.float32),
                                     torch.float64: np.dtype(np.float64)}
# Complex parameters reach the kernels as real (..., 2) views of these dtypes.
ACCEPTED = (torch.float32, torch.float64, torch.complex64, torch.complex128)
# Fewest elements worth a thread: waking one costs about what a core needs to stream
# this many elements of Adam (docs/performance.md, "Behind the code").
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
    # per-tensor arrays of `dtype` a kernel call fills, one per term (Adam's two bias
    # corrections), added as a formula with more terms needs them
    scratch: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.params)
        self.addresses = self.w.tolist()
        self.zeros = np.zeros(n, np.int64)
        if self.row is None:
            self.row = self.zeros
        self.scratch = [np.empty(n, self.dtype), np.empty(n, self.dtype)]


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


class _Kind:
    """A formula's kernels as the calls below use them. A call, after the parameters' and
    gradients' addresses, passes its state tensors' addresses (`states`, checked in full
    when they are other tensors than last call's), the terms that change with the step
    counts (`terms`, per tensor) and `hp` (`scalars`: the sign and the scalars as an
    array of the tensors' dtype); the flags (`structure`) choose the kernel."""

    def __init__(self, formula: Formula):
        self.formula = formula
        self.names: Names | None = None
        self.module: Any = None
        # two vectorized groups side by side take their first step at once: the second
        # must not see the names before the module is loaded
        self._loading = threading.Lock()

    def _ready(self, kw: dict[str, Any]) -> Names:
        if self.names is None:
            with self._loading:
                if self.names is None:
                    found = names(self.formula, kw)
                    self.module = _nf.kernels(self.formula, found)
                    self._terms = operator.itemgetter(*found.terms, "")
                    self.names = found
        return self.names

    def structure(self, kw: dict[str, Any]) -> tuple[bool, ...]:
        """The flags, in the element's order: they choose the kernel and its states."""
        flags = self.formula.flags(kw)
        return tuple(bool(flags[f]) for f in self._ready(kw).flags)

    def kernel(self, structure: tuple[bool, ...]) -> Callable[..., Any]:
        return _nf.kernel(self.module, structure)

    @property
    def has_terms(self) -> bool:
        return self.formula.terms is not None

    def states(self, lay: Layout, params: Sequence[torch.Tensor], lists: list[list[Any]],
               structure: tuple[bool, ...]) -> tuple[Any, ...]:
        """The state tensors' addresses (`_unused` for those the flags leave out); lazy
        states missing on their first step are made here, zero."""
        names = self.names
        assert names is not None
        used = self.formula.used(dict(zip(names.flags, structure)))
        out = []
        for name, ts, on in zip(self.formula.states, lists, used):
            if not on:
                out.append(_unused(lay))
                continue
            if name in self.formula.lazy:
                _checks.first_buffers(ts, params, torch.zeros_like)
            out.append(_addresses(ts, lay, params[0].dtype,
                                  self.formula.keys.get(name, name)))
        return tuple(out)

    def scalars(self, lay: Layout, kw: dict[str, Any]) -> tuple[np.ndarray]:
        """`hp`, one row: the gradient's sign, then the scalars worked out in float64."""
        names = self._ready(kw)
        scalars = self.formula.scalars(kw)
        return (np.array([[-1.0 if kw.get("maximize") else 1.0,
                           *(scalars[k] for k in names.columns)]], lay.dtype),)

    def lr_columns(self, kw: dict[str, Any]) -> tuple[tuple[int, str], ...]:
        """(column of `hp`, scalar) of the scalars that η moves, at these other arguments."""
        assert self.names is not None
        now, moved = self.formula.scalars(kw), self.formula.scalars({**kw, "lr": 2 * kw["lr"] + 1})
        return tuple((j + 1, name) for j, name in enumerate(self.names.columns)
                     if moved[name] != now[name])

    def refill(self, hp: np.ndarray, kw: dict[str, Any],
               columns: tuple[tuple[int, str], ...]) -> None:
        """A new η (a scheduler's) written into `hp` in place: the `lr_columns` only."""
        scalars = self.formula.scalars(kw)
        for j, name in columns:
            hp[0, j] = scalars[name]

    def terms(self, kw: dict[str, Any], t: Any) -> tuple[Any, ...]:
        assert self.formula.terms is not None
        # the "" key makes the getter return a tuple for a formula of one term too
        return self._terms({**self.formula.terms(kw, t), "": 0})[:-1]  # type: ignore[no-any-return]


_KINDS: dict[str, _Kind] = {}


def _kind(name: str) -> _Kind:
    kind = _KINDS.get(name)
    if kind is None or kind.formula is not FORMULAS[name]:
        kind = _KINDS[name] = _Kind(FORMULAS[name])
    return kind


def _per_tensor(kind: _Kind, lay: Layout, steps: list[int], kw: dict[str, Any]
                ) -> Sequence[np.ndarray]:
    """A kind's terms per tensor at its t (`steps[i]`), worked out in float64 and then
    rounded to the tensors' dtype."""
    if steps.count(steps[0]) == len(steps):  # as usual, one t for the group: one value each
        values = kind.terms(kw, steps[0])
        if len(values) > len(lay.scratch):  # a formula with more terms than any before
            lay.scratch.extend(np.empty(len(lay.params), lay.dtype)
                               for _ in range(len(values) - len(lay.scratch)))
        arrays = lay.scratch[:len(values)]
        for a, x in zip(arrays, values):
            a.fill(x)
        return arrays
    return tuple(np.array(column, lay.dtype) for column in zip(*(kind.terms(kw, t)
                                                                  for t in steps)))


def _fused(name: str, params: list[torch.Tensor], grads: list[torch.Tensor],
           lists: list[list[Any]], steps: list[int] | None, kw: dict[str, Any],
           layout: Layout | None) -> None:
    """One call of the formula's kernel on the group."""
    lay, g = _group(params, grads, layout)
    kind = _kind(name)
    structure = kind.structure(kw)
    if kind.has_terms and steps is None:
        steps = kind.formula.first_steps(lists, len(params))
    per_step = _per_tensor(kind, lay, steps, kw) if kind.has_terms and steps else ()
    _run(kind.kernel(structure), lay, lay.w, g, *kind.states(lay, params, lists, structure),
         *per_step, *kind.scalars(lay, kw))


class Prepared:
    """One group's kernel call kept between steps: the state tensors' addresses checked
    once, the scalars worked out again only when the arguments or the counts change.

    `holds(lists, kw)` says whether the call still takes these state tensors: the same
    ones, at the same addresses, contiguous, and arguments that choose the same ones
    (else prepare again); `run(grads, steps, kw)` then updates.
    """

    __slots__ = ("kind", "layout", "structure", "states", "tensors", "addresses", "kw",
                 "scalars", "per_step", "kernel", "terms_move", "lr_columns")

    def __init__(self, kind: _Kind, layout: Layout, structure: tuple[Any, ...],
                 states: tuple[Any, ...], tensors: list[torch.Tensor]):
        self.kind, self.layout, self.structure, self.states = kind, layout, structure, states
        self.kernel = kind.kernel(structure)
        self.tensors, self.addresses = tensors, _checks.addresses(tensors)
        self.kw: dict[str, Any] | None = None
        self.scalars: tuple[Any, ...] = ()
        self.per_step: Sequence[Any] = ()
        self.terms_move = True  # whether a new η alone changes the terms (without counts)
        self.lr_columns: tuple[tuple[int, str], ...] = ()  # what a new η alone rewrites

    def holds(self, lists: list[list[Any]], kw: dict[str, Any], only_lr: bool = False) -> bool:
        """`only_lr`: `kw` differs from the last call's in η alone, which no flag reads."""
        tensors = _present(lists)
        return (len(tensors) == len(self.tensors) and all(map(operator.is_, tensors, self.tensors))
                and _checks.addresses(tensors) == self.addresses
                and all(map(torch.Tensor.is_contiguous, tensors))
                and (kw is self.kw or only_lr or self.kind.structure(kw) == self.structure))

    def run(self, grads: Sequence[torch.Tensor], steps: list[int] | None,
            kw: dict[str, Any], only_lr: bool = False) -> None:
        """One update; `only_lr`: `kw` differs from the last call's in η alone."""
        lay, kind = self.layout, self.kind
        renew = kw is not self.kw  # the terms of a formula without counts may change
        if renew and only_lr and self.kw is not None:
            kind.refill(self.scalars[0], kw, self.lr_columns)
            renew = self.terms_move
        elif renew:
            self.scalars = kind.scalars(lay, kw)
            self.lr_columns = kind.lr_columns(kw)
            self.terms_move = kind.has_terms and kind.terms(kw, 2) != kind.terms(
                {**kw, "lr": 2 * kw["lr"] + 1}, 2)
        self.kw = kw
        if kind.has_terms and steps is not None:
            self.per_step = _per_tensor(kind, lay, steps, kw)
        elif kind.has_terms and renew:  # no counts: it replays at t = 2
            n = len(lay.params)  # its own arrays: the layout's scratch is shared
            self.per_step = tuple(np.full(n, x, lay.dtype) for x in kind.terms(kw, 2))
        g = np.fromiter(map(torch.Tensor.data_ptr, grads), np.int64, len(grads))
        if lay.total < 2 * MIN_PER_THREAD:  # `_run`'s first case, without the call
            self.kernel(0, lay.tensor.size, lay.tensor, lay.first, lay.sizes, lay.row, lay.w,
                        g, *self.states, *self.per_step, *self.scalars)
        else:
            _run(self.kernel, lay, lay.w, g, *self.states, *self.per_step, *self.scalars)


def _present(lists: list[list[Any]]) -> list[torch.Tensor]:
    return [t for ts in lists for t in ts if t is not None]


def prepare(name: str, params: Sequence[torch.Tensor], lists: list[list[Any]],
            kw: dict[str, Any], layout: Layout) -> Prepared | None:
    """Group `params`' call of formula `name` (state tensors `lists`, arguments `kw` as the
    update functions take them) on `layout`, kept for the steps that replay this one; None
    when the call would first create state (SGD's heavy-ball buffers: the optimizer keeps
    those, so its full step runs then)."""
    kind = _kind(name)
    structure = kind.structure(kw)
    copies = [list(ts) for ts in lists]
    states = kind.states(layout, params, copies, structure)
    if any(a is not b for ts, cs in zip(lists, copies) for a, b in zip(ts, cs)):
        return None
    return Prepared(kind, layout, structure, states, _present(lists))


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
    """Formula `name`'s kernel stepping K members at once: `members[k]` is member k's
    keyword arguments as the update functions take them (its optimizer's own), the same
    for every step. Terms a member leaves out (SGD's momentum μ = 0 in a batch with
    momentum) run as zeros there: the kernel's flags are on where any member's are."""

    def __init__(self, name: str, members: Sequence[dict[str, Any]]):
        self.kind = _kind(name)
        self.members = list(members)
        self.structure = tuple(map(any, zip(*(self.kind.structure(kw) for kw in members))))
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
                                            for kw in self.members]),)
        return None

    def run(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
            lists: list[list[Any]], t: int) -> None:
        """One step of every member (after `unavailable` found nothing): `lists` are the
        formula's state lists of stacked tensors, t counts from 1 for every member."""
        lay = self.layout
        assert lay is not None
        g = lay.per_slice(_checks.pointers(grads))
        states = self.kind.states(lay.stacked, params, lists, self.structure)
        per_step: tuple[np.ndarray, ...] = ()
        if self.kind.has_terms:  # each term per member, per slice
            row, dtype = lay.slices.row, lay.stacked.dtype
            assert row is not None  # a batch's slices always have their member rows
            t_ = self.kind.formula.step_of(t)
            each = np.array([self.kind.terms(kw, t_) for kw in self.members], np.float64)
            per_step = tuple(each[:, j].astype(dtype)[row] for j in range(each.shape[1]))
        _run(self.kind.kernel(self.structure), lay.slices, lay.slices.w, g,
             *map(lay.per_slice, states), *per_step, *self.scalars)


def batched(name: str, members: Sequence[dict[str, Any]]) -> BatchedStep:
    """Formula `name`'s batched step for K members with these keyword arguments."""
    return BatchedStep(name, members)


def _update(name: str, params: list[torch.Tensor], grads: list[torch.Tensor], *lists: Any,
            layout: Layout | None = None, **kw: Any) -> None:
    formula = FORMULAS[name]
    states = len(formula.states)
    steps = list(lists[states]) if len(lists) > states else None
    _fused(name, params, grads, [ts if isinstance(ts, list) else list(ts)
                                 for ts in lists[:states]], steps, kw, layout)


# name -> the fused update of formula `name`, with the keyword `layout` besides the
# reference update's
KERNELS: Mapping[str, Callable[..., None]] = Kernels(_update)
