"""An optimizer's update, written once: one element at a time, in plain arithmetic.

An optimizer's file defines its update as one function of one element (`Formula.element`)
and names its parts in a `Formula`. Every path is derived from that one function:
- the torch paths (`optimlab.optim._formula`) call it on tensors: one tensor at a time
  (reference), on lists of tensors through torch's multi-tensor ops (foreach), on
  parameters stacked over K members (batched);
- the fused kernels compile a copy of its source: numba on CPU (`numba_cpu`), Triton on
  CUDA (`triton_cuda`), each with its own `sqrt`, `maximum` and `sign`.

So the element may use only `+ - * /`, comparisons, `if` on its flags, its arguments and
the three functions of this module (`ALLOWED`); `check` refuses anything else. Its
arguments, in order: the parameter `w`, the gradient `g` (already negated under
`maximize`), then its state elements (`states`), then keyword-only: scalars, terms and
flags, each by name. It returns the new `w` and the new states, in the same order.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Kw = Mapping[str, Any]


def sqrt(x: Any) -> Any:
    """√x: of a float, a tensor or a list of tensors (the foreach path's)."""
    return math.sqrt(x) if isinstance(x, float) else x.sqrt()


def maximum(a: Any, b: Any) -> Any:
    """The larger of a and b, element by element; NaN in either gives NaN (torch.maximum).
    b may be a number (a bound: torch.clamp_min)."""
    return a.clamp_min(b) if isinstance(b, (int, float)) else a.maximum(b)


def sign(x: Any) -> Any:
    """−1, 0 or 1 by the sign of x; 0 for NaN (torch.sign)."""
    return x.sign()


ALLOWED = frozenset({"sqrt", "maximum", "sign"})

# name -> formula, every one made so far (the optimizers' files make theirs on import):
# what the fused kernels know of the optimizers
FORMULAS: dict[str, Formula] = {}


@dataclass(frozen=True)
class Modes:
    """The move between the point an optimizer trains at and the point it is evaluated at,
    element by element: w ← move(w, state, c=c) with the state element `state` and c
    worked out in float64 from the update's keyword arguments, `to_eval(kw)` for `eval()`,
    `to_train(kw)` for `train()` (floats, or [K] tensors for K members). It runs only when
    the mode changes (an evaluation), so no kernel compiles it."""

    state: str
    move: Callable[..., Any]
    to_eval: Callable[[Kw], Any]
    to_train: Callable[[Kw], Any]


@dataclass(frozen=True)
class Formula:
    """One optimizer's update and what each path needs to run it.

    name: the kernel's name (the specification's `kernel`);
    element: the update of one element (see the module's docstring);
    states: the state elements' names, in the element's order, which is also the order of
        the update functions' state lists;
    scalars: `scalars(kw)`: the element's scalars of a param group, by name, worked out in
        float64 from `kw`, the keyword arguments of the optimizer's update functions (or
        with [K] float64 tensors in `kw`, for K members at once): terms like 1 − β are
        formed here, before the kernels round them to the parameters' dtype;
    flags: `flags(kw)`: the options that change the program (constants in the kernels),
        never of η alone (a new η from a scheduler keeps the kernel);
    terms: `terms(kw, t)`: the scalars that change with a tensor's step count t (from 1);
        None when nothing does. An optimizer that keeps no count (SGD, as torch's) gets
        t = 1 on the first step of its `lazy` states and t = 2 after;
    uses: {state: flag}: a state that exists only while its flag is on;
    lazy: the states created on their first step (zero), not with the optimizer's state;
    initial: {state: key of kw}: a state that starts at that value instead of zero;
    copies: the states that start as a copy of the parameter (Schedule-Free's z);
    keys: {state: its key in the optimizer's state} (torch's names: `exp_avg`), where the
        optimizer class finds its state lists, and for messages and the diagnostics;
    denominator: a part of the update the element calls by name (with its keyword
        arguments by name): √ŝ + ε, what the step of an adaptive method divides by. Its
        arguments are state elements (positional) and the element's keyword arguments;
        the step-size diagnostics evaluate it on the optimizer's state
        (`optimlab.optim.diagnostics`), and the kernels compile it with the element;
    modes: for an optimizer whose trained parameter is not the point to evaluate
        (Schedule-Free's y and x), how its `train()` and `eval()` move between them.
    """

    name: str
    element: Callable[..., tuple[Any, ...]]
    states: tuple[str, ...]
    scalars: Callable[[Kw], dict[str, Any]]
    flags: Callable[[Kw], dict[str, bool]] = lambda kw: {}
    terms: Callable[[Kw, Any], dict[str, Any]] | None = None
    uses: Mapping[str, str] = field(default_factory=dict)
    lazy: tuple[str, ...] = ()
    initial: Mapping[str, str] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)
    denominator: Callable[..., Any] | None = None
    copies: tuple[str, ...] = ()
    modes: Modes | None = None

    def __post_init__(self) -> None:
        check(self)
        known = FORMULAS.setdefault(self.name, self)
        if known is not self and known.element is not self.element:
            raise ValueError(f"a formula named {self.name!r} is registered already")

    def used(self, flags: Mapping[str, bool]) -> tuple[bool, ...]:
        """Per state: whether these flags use it."""
        return tuple(s not in self.uses or bool(flags[self.uses[s]]) for s in self.states)

    def first_steps(self, states: Sequence[Sequence[Any]], count: int) -> list[int]:
        """t per tensor for a formula that keeps no count (`lazy` states): 1 where a lazy
        state is still missing (its first step), else 2."""
        lazy = [ts for name, ts in zip(self.states, states) if name in self.lazy]
        return [1 if any(ts[i] is None for ts in lazy) else 2 for i in range(count)]

    def step_of(self, t: int) -> int:
        """The t the terms of K members at step t take (members of a batch all start
        together): a formula with lazy states sees 1, then 2."""
        return min(t, 2) if self.lazy else t

    def keywords(self) -> tuple[str, ...]:
        """The element's keyword-only arguments, in its order."""
        params = inspect.signature(self.element).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)

    def parts(self) -> tuple[Callable[..., Any], ...]:
        """The functions the kernels compile: the denominator if any, then the element."""
        return (*((self.denominator,) if self.denominator else ()), self.element)

    def source(self, fn: Callable[..., Any] | None = None) -> str:
        """The source of a part (the element by default), undecorated and dedented."""
        lines = textwrap.dedent(inspect.getsource(fn or self.element)).splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("def "))
        return "\n".join(lines[start:]) + "\n"


def check(formula: Formula) -> None:
    """TypeError unless the element is one the kernels can compile: positional (w, g,
    *states), then keyword-only arguments, and no name from outside but `ALLOWED`."""
    params = list(inspect.signature(formula.element).parameters.values())
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    if positional != ["w", "g", *formula.states]:
        raise TypeError(f"{formula.name}: the element's positional arguments are {positional}; "
                        f"needed: ['w', 'g', {', '.join(map(repr, formula.states))}]")
    helper = formula.denominator
    for fn, allowed in ((formula.element, ALLOWED | {helper.__name__} if helper else ALLOWED),
                        *(((helper, ALLOWED),) if helper else ())):
        code = fn.__code__
        outside = set(code.co_names) - allowed - set(code.co_varnames)
        if outside:
            raise TypeError(f"{formula.name}: {fn.__name__} uses {sorted(outside)}; allowed: "
                            f"its arguments and {', '.join(sorted(allowed))}")
