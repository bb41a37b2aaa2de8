"""The fused CPU kernels, written from each optimizer's formula.

For a `Formula`, `kernels(formula, names)` writes a module holding a copy of the element's
source, compiled by numba with its own `sqrt`, `maximum` and `sign`, and one kernel per
combination of the formula's flags. A kernel updates the chunks [lo, hi) of a param group
(`_numba_kernels.plan`), each element by one call of the element, inlined: the flags are
constants there, so each combination compiles to its own loop without branches (a flag
tested in the loop would keep LLVM from vectorizing it).

A kernel's arguments: the chunk plan, then the addresses (int64 arrays) of the
parameters, the gradients and the states the flags use, then one array per term (a value
per tensor), then `hp`: per row, the sign of the gradient (−1 under `maximize`) and the
scalars, in the element's order (`Names.columns`). The modules are written once per
formula's source into a cache folder, so that numba's on-disk cache (`cache=True`) keeps
their machine code between processes.
"""

from __future__ import annotations

import itertools
from types import ModuleType
from typing import Any

from optimlab.kernels._generate import Names, written
from optimlab.kernels._generate import parts as _parts
from optimlab.kernels.formula import Formula

_PREAMBLE = '''\
# Written by optimlab from the formula of {name}; rewritten when the formula changes.
import numpy as np
from numba import njit
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from optimlab.kernels._numba_kernels import CHUNK, _view

sqrt = np.sqrt


def maximum(a, b):
    pass


@overload(maximum, inline="always")
def _maximum(a, b):
    cast = as_dtype(a).type  # a bound given as a number takes a's dtype

    def impl(a, b):
        c = cast(b)
        return c if (c != c or c > a) else a  # torch.maximum: NaN in either wins

    return impl


def sign(x):
    pass


@overload(sign, inline="always")
def _sign(x):
    one, zero = as_dtype(x).type(1), as_dtype(x).type(0)  # in x's dtype

    def impl(x):
        if x > 0:
            return one
        if x < 0:
            return -one
        return zero  # 0 and NaN, as torch.sign

    return impl


'''


def source(formula: Formula, n: Names) -> str:
    """The module: the element, then one kernel per combination of the flags."""
    parts = [_PREAMBLE.format(name=formula.name), _parts(formula, '@njit(inline="always")\n')]
    for combo in itertools.product((False, True), repeat=len(n.flags)):
        parts.append("\n\n" + _kernel(formula, n, combo))
    return "".join(parts)


def kernel_name(combo: tuple[bool, ...]) -> str:
    return "kernel_" + "".join("1" if f else "0" for f in combo)


def _kernel(formula: Formula, n: Names, combo: tuple[bool, ...]) -> str:
    used = formula.used(dict(zip(n.flags, combo)))
    states = [s for s, on in zip(formula.states, used) if on]
    args = ["lo", "hi", "tensor", "first", "sizes", "row", "p_w", "p_g",
            *(f"p_{s}" for s in formula.states), *(f"t_{t}" for t in n.terms), "hp"]
    lines = ["@njit(nogil=True, cache=True, error_model=\"numpy\")",
             f"def {kernel_name(combo)}({', '.join(args)}):",
             "    for c in range(lo, hi):",
             "        i, start = tensor[c], first[c]",
             "        h = hp[row[i]]",
             "        k_sign = h[0]"]
    lines += [f"        k_{name} = h[{j + 1}]" for j, name in enumerate(n.columns)]
    lines += [f"        k_{name} = t_{name}[i]" for name in n.terms]
    lines.append("        n = min(CHUNK, sizes[i] - start)")
    lines += [f"        x_{s} = _view(p_{s}[i], start, n, h)" for s in ("w", "g", *states)]
    call = ["x_w[j]", "x_g[j] * k_sign", *(f"x_{s}[j]" if on else "x_g[j]"
                                           for s, on in zip(formula.states, used))]
    call += [f"k_{k}" for k in (*n.columns, *n.terms)] + [str(f) for f in combo]
    outs = ["o_w", *(f"o_{s}" if on else "_" for s, on in zip(formula.states, used))]
    _check_order(formula, n)
    lines += ["        for j in range(n):",
              f"            {', '.join(outs)}, = element({', '.join(call)})"]
    lines += [f"            x_{s}[j] = o_{s}" for s in ("w", *states)]
    lines.append("    return 0")
    return "\n".join(lines).replace("element(", f"{formula.element.__name__}(") + "\n"


def _check_order(formula: Formula, n: Names) -> None:
    """The call passes scalars, terms, flags in that order: the element must list them so."""
    if formula.keywords() != (*n.columns, *n.terms, *n.flags):
        raise TypeError(f"{formula.name}: the element's keyword arguments must list the "
                        f"scalars, then the terms, then the flags: "
                        f"{[*n.columns, *n.terms, *n.flags]}")


# source -> its module: one per formula's source and process
_modules: dict[str, ModuleType] = {}


def kernels(formula: Formula, n: Names) -> ModuleType:
    """The module of `formula`'s kernels, written (once per source) and imported."""
    text = source(formula, n)
    module = _modules.get(text)
    if module is None:
        module = _modules[text] = written("optimlab_fused", formula, text)
    return module


def kernel(module: ModuleType, combo: tuple[bool, ...]) -> Any:
    """The kernel for this combination of the flags."""
    return getattr(module, kernel_name(combo))
