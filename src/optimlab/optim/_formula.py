"""The torch paths of an optimizer, derived from its `Formula`.

`reference(formula)` and `foreach(formula)` are update functions with the signature every
optimizer's update has: ``fn(params, grads, *state_lists, [steps], **kw)`` (``steps`` when
the formula has terms, `kw` the update's keyword arguments). `batched_update` steps K
members stacked over a leading dim. Each calls the formula's element on whole tensors: one
tensor at a time, lists of tensors (`Many`: every operator is one of torch's multi-tensor
ops), or the stacked tensors with one row of scalars per member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from optimlab.kernels.formula import Formula, Kw

Update = Callable[..., None]


def reference(formula: Formula) -> Update:
    """The update one tensor at a time: the element on each tensor in turn."""

    def update(params: list[torch.Tensor], grads: list[torch.Tensor], *lists: Any,
               **kw: Any) -> None:
        states, steps = _split(formula, params, lists)
        flags, scalars = formula.flags(kw), formula.scalars(kw)
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
    """The update on whole lists with torch's multi-tensor ops."""

    def update(params: list[torch.Tensor], grads: list[torch.Tensor], *lists: Any,
               **kw: Any) -> None:
        if not params:
            return
        states, steps = _split(formula, params, lists)
        flags, scalars = formula.flags(kw), formula.scalars(kw)
        terms = _list_terms(formula, kw, steps)
        olds = [params, *(ts if on else None for ts, on in zip(states, formula.used(flags)))]
        wide = [None if ts is None else Many(_wides(ts)) for ts in olds]
        g = Many(_wides(grads))
        out = formula.element(wide[0], -g if kw.get("maximize") else g, *wide[1:],
                              **scalars, **terms, **flags)
        for old, new in zip(olds, out, strict=True):
            if old is not None and new is not None and new.tensors is not old:
                torch._foreach_copy_(old, new.tensors)

    update.__name__ = update.__qualname__ = f"{formula.name}_foreach"
    update.__doc__ = f"{formula.name}'s element with torch's multi-tensor ops."
    return update


def _split(formula: Formula, params: Sequence[torch.Tensor], lists: tuple[Any, ...]
           ) -> tuple[list[list[Any]], list[Any]]:
    """The state lists and each tensor's t; lazy states made here (zero) on first use."""
    states = [list(ts) if not isinstance(ts, list) else ts for ts in lists[:len(formula.states)]]
    steps = list(lists[len(formula.states)]) if len(lists) > len(formula.states) else None
    fresh = [False] * len(params)
    for name, ts in zip(formula.states, states):
        if name in formula.lazy:
            for i, t in enumerate(ts):
                if t is None:
                    ts[i] = torch.zeros_like(params[i])
                    fresh[i] = True
    if steps is None:
        steps = [1 if f else 2 for f in fresh]
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


class Many:
    """A list of tensors whose operators are torch's multi-tensor (`_foreach_*`) ops; the
    other operand is a `Many`, a float or a list of floats (one per tensor)."""

    __slots__ = ("tensors",)

    def __init__(self, tensors: Sequence[torch.Tensor]):
        self.tensors: Any = tensors  # a list, or the tuple a multi-tensor op returned

    def _other(self, x: Any) -> Any:
        return x.tensors if isinstance(x, Many) else x

    def __add__(self, x: Any) -> Many:
        return Many(torch._foreach_add(self.tensors, self._other(x)))

    __radd__ = __add__

    def __mul__(self, x: Any) -> Many:
        return Many(torch._foreach_mul(self.tensors, self._other(x)))

    __rmul__ = __mul__

    def __sub__(self, x: Any) -> Many:
        return Many(torch._foreach_sub(self.tensors, self._other(x)))

    def __rsub__(self, x: Any) -> Many:
        return (-self) + x

    def __truediv__(self, x: Any) -> Many:
        return Many(torch._foreach_div(self.tensors, self._other(x)))

    def __rtruediv__(self, x: Any) -> Many:
        return Many(torch._foreach_reciprocal(self.tensors)) * x

    def __neg__(self) -> Many:
        return Many(torch._foreach_neg(self.tensors))

    def sqrt(self) -> Many:
        return Many(torch._foreach_sqrt(self.tensors))

    def sign(self) -> Many:
        return Many(torch._foreach_sign(self.tensors))

    def maximum(self, x: Many) -> Many:
        return Many(torch._foreach_maximum(self.tensors, x.tensors))

    def clamp_min(self, x: float) -> Many:
        return Many(torch._foreach_clamp_min(self.tensors, x))


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
    """The stacked state lists, made on first use (zero, or the formula's `initial`); a
    state the flags leave out is a list of None."""
    lists = []
    for name, on in zip(formula.states, formula.used(flags)):
        if not on:
            lists.append([None] * len(params))
            continue
        if name not in state:
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
        t_ = t if not formula.lazy else (1 if t == 1 else 2)
        each = [formula.terms(kw, t_) for kw in members]
        terms = {k: torch.tensor([float(x[k]) for x in each], dtype=torch.float64)
                 for k in each[0]}
    for i, (w, g) in enumerate(zip(params, grads, strict=True)):
        rows = {k: _per_member(v, w) for k, v in {**scalars, **terms}.items()}
        mine = [ts[i] for ts in lists]
        out = formula.element(w, g, *mine, **rows, **flags)
        _store([w, *mine], out)


def _per_member(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [K] float64 scalar shaped [K, 1, …, 1] in `like`'s dtype, to broadcast over it."""
    return h.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
