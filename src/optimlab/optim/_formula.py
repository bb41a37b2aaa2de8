"""The torch paths of an optimizer, derived from its `Formula`.

`reference(formula)` and `foreach(formula)` are update functions with the signature every
optimizer's update has: ``fn(params, grads, *state_lists, [steps], **kw)`` (``steps`` when
the formula has terms, `kw` the update's keyword arguments). `batched_update` steps K
members stacked over a leading dim. Each calls the formula's element on whole tensors: one
tensor at a time, lists of tensors (`Many`: every operator is one of torch's multi-tensor
ops), or the stacked tensors with one row of scalars per member.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from optimlab.kernels._checks import PLAIN
from optimlab.kernels.formula import Formula, Kw

Update = Callable[..., None]


def reference(formula: Formula) -> Update:
    """The update one tensor at a time: the element on each tensor in turn."""

    def update(params: list[torch.Tensor], grads: list[torch.Tensor], *lists: Any,
               **kw: Any) -> None:
        flags, scalars = formula.flags(kw), formula.scalars(kw)
        states, steps = _split(formula, params, lists, flags)
        used = formula.used(flags)
        for i, (w, g) in enumerate(zip(params, grads)):
            terms = formula.terms(kw, steps[i]) if formula.terms is not None else {}
            mine = [ts[i] if on else None for ts, on in zip(states, used)]
            out = formula.element(*map(_wide, (w, _signed(g, kw), *mine)), **scalars, **terms,
                                  **flags)
            _store([w, *mine], out)

    update.__name__ = update.__qualname__ = f"{formula.name}_reference"
    update.__doc__ = f"{formula.name}'s element, one tensor at a time."
    return update


def foreach(formula: Formula) -> Update:
    """The update on lists of tensors with torch's multi-tensor ops."""

    def update(params: list[torch.Tensor], grads: list[torch.Tensor], *lists: Any,
               **kw: Any) -> None:
        if not params:
            return
        flags, scalars = formula.flags(kw), formula.scalars(kw)
        states, steps = _split(formula, params, lists, flags)
        used = formula.used(flags)
        for lo, hi in _batches(params):
            olds = [params[lo:hi], *(ts[lo:hi] if on else None for ts, on in zip(states, used))]
            wide = [None if ts is None else Many(_wides(ts)) for ts in olds]
            g = Many(_wides(grads[lo:hi]))
            out = formula.element(wide[0], -g if kw.get("maximize") else g, *wide[1:],
                                  **scalars, **_list_terms(formula, kw, steps[lo:hi]), **flags)
            for old, new in zip(olds, out, strict=True):
                if old is not None and new is not None and new.tensors is not old:
                    _copy(old, new.tensors)

    update.__name__ = update.__qualname__ = f"{formula.name}_foreach"
    update.__doc__ = f"{formula.name}'s element with torch's multi-tensor ops."
    return update


def _copy(old: list[torch.Tensor], new: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> None:
    """old ← new; one op for plain tensors, tensor by tensor for a subclass (FSDP2's DTensor
    has no sharding rule for the multi-tensor copy)."""
    if all(type(t) in PLAIN for t in old):
        torch._foreach_copy_(old, new)
    else:
        for o, n in zip(old, new, strict=True):
            o.copy_(n)


# Elements per batch of tensors on CPU: each multi-tensor op makes a list of temporaries
# as large as its batch, and a batch this size keeps them in cache between the ops.
CPU_BATCH = 1 << 16


def _batches(params: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    """[lo, hi) ranges of the tensors, one op per range: all of them off CPU (one launch
    per op), on CPU runs of about `CPU_BATCH` elements (a larger tensor alone)."""
    if not params[0].is_cpu:
        return [(0, len(params))]
    ranges, lo, size = [], 0, 0
    for i, p in enumerate(params):
        if size and size + p.numel() > CPU_BATCH:
            ranges.append((lo, i))
            lo, size = i, 0
        size += p.numel()
    return [*ranges, (lo, len(params))]


def _split(formula: Formula, params: Sequence[torch.Tensor], lists: tuple[Any, ...],
           flags: dict[str, bool]) -> tuple[list[list[Any]], list[Any]]:
    """The state lists and each tensor's t; lazy states the flags use made here (zero) on
    their first step."""
    states = [list(ts) if not isinstance(ts, list) else ts for ts in lists[:len(formula.states)]]
    steps = list(lists[len(formula.states)]) if len(lists) > len(formula.states) else None
    if steps is None:  # before the lazy states are made
        steps = formula.first_steps(states, len(params))
    for name, ts, on in zip(formula.states, states, formula.used(flags)):
        if on and name in formula.lazy:
            for i, t in enumerate(ts):
                if t is None:
                    ts[i] = torch.zeros_like(params[i])
    return states, steps


# Dtypes the torch paths compute in float32, rounding once where they store (as torch's
# fused kernels and ours do): op by op, each op would round to 8 or 11 bits.
REDUCED = (torch.bfloat16, torch.float16)


def _wide(t: torch.Tensor | None) -> torch.Tensor | None:
    return t.float() if t is not None and t.dtype in REDUCED else t


def _wides(ts: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.float() for t in ts] if ts and ts[0].dtype in REDUCED else ts


def _signed(g: torch.Tensor, kw: Kw) -> torch.Tensor:
    """The gradient the element takes: negated under `maximize`; a sparse one made dense
    (the element mixes it with dense state: the same values as torch's sparse ops)."""
    g = g.to_dense() if g.is_sparse else g
    return -g if kw.get("maximize") else g


def _store(olds: Sequence[torch.Tensor | None], news: Sequence[Any]) -> None:
    """Write the element's results into the tensors they update (the unchanged stay)."""
    for old, new in zip(olds, news, strict=True):
        if old is not None and new is not old:
            old.copy_(new)


def _list_terms(formula: Formula, kw: Kw, steps: list[Any]) -> dict[str, Any]:
    """The terms at each tensor's t: one float where every tensor has the same t, else a
    list of floats (the multi-tensor ops take one scalar per tensor)."""
    if formula.terms is None:
        return {}
    if steps.count(steps[0]) == len(steps):
        return formula.terms(kw, steps[0])
    per = [formula.terms(kw, t) for t in steps]
    return {k: [p[k] for p in per] for k in per[0]}


class _Probe:
    """Measures the reference count an operand has inside an operator method: for a
    temporary (the result of a subexpression) and for a name's value."""

    def __add__(self, other: Any) -> int:
        return sys.getrefcount(self)

    def __mul__(self, other: Any) -> _Probe:
        return _Probe()


def _temporary_count() -> int:
    named = _Probe()
    temporary, bound = (named * 1) + 0, named + 0
    return temporary if temporary < bound else 0  # 0: never reuse (another interpreter)


# The most references a temporary has inside an operator method: an operand with no more
# is referenced by nothing else, so its memory can take the result (as NumPy elides
# temporaries): `beta1 * v + rest1 * g` allocates two lists, not three.
_TEMPORARY = _temporary_count()


class Many:
    """A list of tensors whose operators are torch's multi-tensor (`_foreach_*`) ops; the
    other operand is a `Many`, a float or a list of floats (one per tensor). An operand
    that is a temporary takes the result in place."""

    __slots__ = ("tensors",)

    def __init__(self, tensors: Sequence[torch.Tensor]):
        self.tensors: Any = tensors  # a list, or the tuple a multi-tensor op returned

    def _other(self, x: Any) -> Any:
        return x.tensors if isinstance(x, Many) else x

    def _apply(self, x: Any, op: Callable[..., Any], op_: Callable[..., Any],
               commutes: bool) -> Many:
        """self op x, in the memory of whichever operand is a temporary."""
        if sys.getrefcount(self) <= _TEMPORARY + 1:  # + 1: the reference `_apply` holds
            op_(self.tensors, self._other(x))
            return self
        if commutes and isinstance(x, Many) and sys.getrefcount(x) <= _TEMPORARY + 1:
            op_(x.tensors, self.tensors)
            return x
        return Many(op(self.tensors, self._other(x)))

    def __add__(self, x: Any) -> Many:
        return self._apply(x, torch._foreach_add, torch._foreach_add_, True)

    __radd__ = __add__

    def __mul__(self, x: Any) -> Many:
        return self._apply(x, torch._foreach_mul, torch._foreach_mul_, True)

    __rmul__ = __mul__

    def __sub__(self, x: Any) -> Many:
        return self._apply(x, torch._foreach_sub, torch._foreach_sub_, False)

    def __rsub__(self, x: Any) -> Many:
        return (-self) + x

    def __truediv__(self, x: Any) -> Many:
        return self._apply(x, torch._foreach_div, torch._foreach_div_, False)

    def __rtruediv__(self, x: Any) -> Many:
        return self._unary(torch._foreach_reciprocal, torch._foreach_reciprocal_) * x

    def _unary(self, op: Callable[..., Any], op_: Callable[..., Any]) -> Many:
        if sys.getrefcount(self) <= _TEMPORARY + 1:
            op_(self.tensors)
            return self
        return Many(op(self.tensors))

    def __neg__(self) -> Many:
        return self._unary(torch._foreach_neg, torch._foreach_neg_)

    def sqrt(self) -> Many:
        return self._unary(torch._foreach_sqrt, torch._foreach_sqrt_)

    def sign(self) -> Many:
        return self._unary(torch._foreach_sign, torch._foreach_sign_)

    def maximum(self, x: Many) -> Many:
        return self._apply(x, torch._foreach_maximum, torch._foreach_maximum_, True)

    def clamp_min(self, x: float) -> Many:
        return self._apply(x, torch._foreach_clamp_min, torch._foreach_clamp_min_, False)


def member_flags(formula: Formula, members: Sequence[Kw]) -> dict[str, bool]:
    """The flags of K members at once: a flag on for any member is on (a member without
    it runs its term as zeros, as the kernels do)."""
    each = [formula.flags(kw) for kw in members]
    return {k: any(f[k] for f in each) for k in each[0]} if each else {}


def member_scalars(formula: Formula, members: Sequence[Kw]) -> dict[str, torch.Tensor]:
    """Each scalar as a [K] float64 tensor, member k's worked out from its own arguments."""
    each = [formula.scalars(kw) for kw in members]
    return {k: torch.tensor([float(s[k]) for s in each], dtype=torch.float64) for k in each[0]}


def batched_states(formula: Formula, params: list[torch.Tensor], state: dict[str, Any],
                   flags: dict[str, bool], kw: Kw) -> list[list[Any]]:
    """The stacked state lists, made on first use (zero, the formula's `initial`, or a copy
    of the parameters for its `copies`); a state the flags leave out is a list of None."""
    lists = []
    for name, on in zip(formula.states, formula.used(flags)):
        if not on:
            lists.append([None] * len(params))
            continue
        if name in formula.copies and name not in state:
            state[name] = [p.clone() for p in params]
        elif name not in state:
            fill = float(kw[formula.initial[name]]) if name in formula.initial else 0.0
            state[name] = [torch.full_like(p, fill) for p in params]
        lists.append(state[name])
    return lists


def batched_update(formula: Formula, params: list[torch.Tensor], grads: list[torch.Tensor],
                   lists: list[list[Any]], t: int, members: Sequence[Kw],
                   flags: dict[str, bool], scalars: dict[str, torch.Tensor]) -> None:
    """One step of K members over stacked tensors (leading dim K), every member at step t.
    `scalars` are `member_scalars`; the terms are worked out per member the same way."""
    terms: dict[str, torch.Tensor] = {}
    if formula.terms is not None:
        each = [formula.terms(kw, formula.step_of(t)) for kw in members]
        terms = {k: torch.tensor([float(x[k]) for x in each], dtype=torch.float64)
                 for k in each[0]}
    shaped: dict[tuple[torch.dtype, int], dict[str, torch.Tensor]] = {}
    for i, (w, g) in enumerate(zip(params, grads, strict=True)):
        rows = shaped.get((w.dtype, w.dim()))
        if rows is None:  # the same for every tensor of this dtype and rank
            rows = shaped[w.dtype, w.dim()] = {k: _per_member(v, w)
                                               for k, v in {**scalars, **terms}.items()}
        mine = [ts[i] for ts in lists]
        out = formula.element(w, g, *mine, **rows, **flags)
        _store([w, *mine], out)


def _per_member(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [K] float64 scalar shaped [K, 1, …, 1] in `like`'s dtype, to broadcast over it."""
    return h.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
