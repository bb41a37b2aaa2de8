"""The fused CUDA kernels, in Triton, written from each optimizer's formula.

For a `Formula`, `kernels(formula, kw)` writes a module holding a copy of the element's
source under `@triton.jit` (with this module's `sqrt`, `maximum` and `sign`) and one
kernel, `kernel`, that updates a whole param group in one launch and one pass over
memory, each element by one call of the element. The formula's flags are the kernel's
`tl.constexpr` arguments, upper-cased (`AMSGRAD`): each combination compiles to its own
program, and a state its flags leave out is neither loaded nor stored.

A launch covers a param group through two tables (built by `triton_cuda`):
- `chunks` (int64, [C, 2], kept on the device while the group's tensors stay):
  per program, the tensor index and the first element of its BLOCK elements;
- `table` (int64, uploaded once per step): the hyperparameters (the gradient's sign,
  −1 under `maximize`, then the element's scalars in its order: `Names.columns`), then
  one row per tensor: the data addresses of its parameter, gradient and states (0 for a
  state left out), its element count, and its terms (the scalars of its own step t:
  Adam's bias corrections, SGD's first step). Floats travel as float64 bit patterns.
A program loads its row, turns the addresses into typed pointers
(`int64 → tl.pointer_type`) and updates its block. Addresses as integers work the
same compiled (an `inttoptr`) and in Triton's interpreter (where a pointer is a
host address), so the tests run these kernels on CPU tensors.

Every hyperparameter is read from `table` at run time, so a scheduler changing η
(or the bias corrections changing every step) never recompiles; only the flags and the
dtype are `tl.constexpr`. Arithmetic is float32 whatever the storage dtype (float32,
bfloat16, float16); state is stored in the parameters' dtype, as torch's fused kernels do.

GradScaler: with HAS_SCALE the gradient is divided by `*grad_scale` and written
back unscaled; with HAS_INF a program leaves everything untouched when
`*found_inf != 0` (torch's `_fused_adam_` contract).

A block that lies wholly inside its tensor is loaded without a mask, so that the
compiler can use vector loads; only a tensor's last block is masked. Loaded
addresses carry no alignment the compiler could see: with ALIGNED (every address of
the step 16-byte aligned, checked on the host) the pointers are hinted so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import triton
import triton.language as tl

from optimlab.kernels._generate import Names, names, parts, written
from optimlab.kernels.formula import Formula, Kw


@triton.jit
def sqrt(x):
    """√x as Triton's `tl.sqrt` (what the hand-written kernels used)."""
    return tl.sqrt(x)


@triton.jit
def maximum(a, b):
    """The larger of a and b; NaN in either gives NaN, as torch.maximum. b may be a number."""
    return tl.where((a != a) | (a >= b), a, b)


@triton.jit
def sign(x):
    """−1, 0 or 1 by the sign of x; 0 for NaN, as torch.sign."""
    return tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))


@triton.jit
def _chunk(chunks, table, NHP: tl.constexpr, ROW: tl.constexpr, N_AT: tl.constexpr,
           BLOCK: tl.constexpr):
    """This program's tensor row in `table`, its element offsets, and whether it is full."""
    c = tl.program_id(0)
    i = tl.load(chunks + 2 * c)
    start = tl.multiple_of(tl.load(chunks + 2 * c + 1), BLOCK)
    row = table + NHP + i * ROW
    n = tl.load(row + N_AT)
    return row, start + tl.arange(0, BLOCK), start + BLOCK <= n, n


@triton.jit
def _ptr(row, k: tl.constexpr, DTYPE: tl.constexpr, ALIGNED: tl.constexpr):
    """The address at `row + k` as a pointer to DTYPE."""
    p = tl.load(row + k).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        p = tl.multiple_of(p, 16)
    return p


@triton.jit
def _hp(at, k: tl.constexpr):
    """A float hyperparameter stored as float64 bits at `at + k`, as float32."""
    return tl.load(at + k).to(tl.float64, bitcast=True).to(tl.float32)


@triton.jit
def _go(found_inf, HAS_INF: tl.constexpr):
    """False when GradScaler found an Inf/NaN in this step's gradients: skip the update."""
    if HAS_INF:
        return tl.load(found_inf) == 0
    else:
        return True


@triton.jit
def _grad(g_ptr, offs, mask, grad_scale, sign, HAS_SCALE: tl.constexpr):
    """The gradient in float32, unscaled (and written back so) when GradScaler scaled it."""
    g = tl.load(g_ptr + offs, mask=mask).to(tl.float32)
    if HAS_SCALE:
        g = g / tl.load(grad_scale)
        tl.store(g_ptr + offs, g.to(g_ptr.dtype.element_ty), mask=mask)
    return g * sign


# The kernel's own compile-time arguments, which no flag may take as its name.
FIXED = ("DTYPE", "BLOCK", "ALIGNED", "HAS_SCALE", "HAS_INF")

_PREAMBLE = '''\
# Written by optimlab from the formula of {name}; rewritten when the formula changes.
import triton
import triton.language as tl

from optimlab.kernels._triton_kernels import _chunk, _go, _grad, _hp, _ptr, maximum, sign, sqrt


'''


def flag_names(formula: Formula, n: Names) -> tuple[str, ...]:
    """The kernel's compile-time arguments for the formula's flags."""
    upper = tuple(f.upper() for f in n.flags)
    clash = sorted(set(upper) & set(FIXED)) or len(set(upper)) != len(upper)
    if clash:
        raise TypeError(f"{formula.name}: the flags {list(n.flags)} upper-cased must differ "
                        f"from each other and from {list(FIXED)}")
    return upper


def source(formula: Formula, n: Names) -> str:
    """The module: the element, the update of one block, the kernel."""
    return "".join([_PREAMBLE.format(name=formula.name), parts(formula, "@triton.jit\n"),
                    "\n\n", _block(formula, n), "\n\n", _kernel(formula, n)])


def _block(formula: Formula, n: Names) -> str:
    """`_block`: one block of one tensor, loaded (masked by `mask`), updated, stored."""
    flags = flag_names(formula, n)
    on = dict(zip(n.flags, flags))
    tensors = ("w", *formula.states)
    terms_at = 3 + len(formula.states)  # a row: w, g, the states, n, then the terms
    lines = ["@triton.jit",
             f"def _block({', '.join(f'p_{t}' for t in ('w', 'g', *formula.states))}, offs, "
             "mask, table, row, grad_scale, HAS_SCALE: tl.constexpr"
             + "".join(f", {f}: tl.constexpr" for f in flags) + "):",
             "    g_sign = _hp(table, 0)"]
    lines += [f"    k_{c} = _hp(table, {j + 1})" for j, c in enumerate(n.columns)]
    lines += [f"    k_{t} = _hp(row, {terms_at + j})" for j, t in enumerate(n.terms)]
    lines.append("    x_g = _grad(p_g, offs, mask, grad_scale, g_sign, HAS_SCALE)")
    load = "x_{0} = tl.load(p_{0} + offs, mask=mask).to(tl.float32)"
    store = "tl.store(p_{0} + offs, o_{0}.to(p_{0}.dtype.element_ty), mask=mask)"
    for t in tensors:
        lines += _when(formula, on, t, load.format(t), f"x_{t} = x_g")
    args = [f"x_{t}" for t in ("w", "g", *formula.states)]
    args += [on[k] if k in on else f"k_{k}" for k in formula.keywords()]
    lines.append(f"    {''.join(f'o_{t}, ' for t in tensors)}= "  # a tuple, of one too
                 f"{formula.element.__name__}({', '.join(args)})")
    for t in tensors:
        lines += _when(formula, on, t, store.format(t))
    return "\n".join(lines) + "\n"


def _when(formula: Formula, on: dict[str, str], state: str, line: str,
          otherwise: str | None = None) -> list[str]:
    """`line` for a state every program uses; under its flag for one the flags choose
    (then `otherwise`, the stand-in of a state left out: never stored)."""
    if state not in formula.uses:
        return [f"    {line}"]
    lines = [f"    if {on[formula.uses[state]]}:", f"        {line}"]
    return lines + (["    else:", f"        {otherwise}"] if otherwise else [])


def _kernel(formula: Formula, n: Names) -> str:
    """`kernel`: the launch's entry, one program per chunk."""
    flags = flag_names(formula, n)
    tensors = ("w", "g", *formula.states)
    nhp, row = 1 + len(n.columns), len(tensors) + 1 + len(n.terms)
    call = (f"_block({', '.join(f'p_{t}' for t in tensors)}, offs, {{mask}}, table, row, "
            f"grad_scale, HAS_SCALE{''.join(', ' + f for f in flags)})")
    lines = ["@triton.jit",
             "def kernel(chunks, table, grad_scale, found_inf, DTYPE: tl.constexpr, "
             "BLOCK: tl.constexpr, ALIGNED: tl.constexpr, HAS_SCALE: tl.constexpr, "
             "HAS_INF: tl.constexpr" + "".join(f", {f}: tl.constexpr" for f in flags) + "):",
             f"    row, offs, full, n = _chunk(chunks, table, {nhp}, {row}, {len(tensors)}, "
             "BLOCK)",
             "    if _go(found_inf, HAS_INF):"]
    lines += [f"        p_{t} = _ptr(row, {j}, DTYPE, ALIGNED)" for j, t in enumerate(tensors)]
    lines += ["        if full:", f"            {call.format(mask='None')}",
              "        else:", f"            {call.format(mask='offs < n')}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Written:
    """A formula's kernel, written and imported, and what its launches need to know."""

    formula: Formula
    names: Names
    flags: tuple[str, ...]  # the kernel's compile-time argument for each of `names.flags`
    kernel: Any


# formula name -> its kernel, for the formulas made so far
_written: dict[str, Written] = {}


def kernels(formula: Formula, kw: Kw) -> Written:
    """The formula's kernel (its names from its update's keyword arguments `kw`), written
    and imported on first use (again for another formula of that name)."""
    found = _written.get(formula.name)
    if found is None or found.formula is not formula:
        n = names(formula, kw)
        module = written("optimlab_triton", formula, source(formula, n))
        found = _written[formula.name] = Written(formula, n, flag_names(formula, n),
                                                 module.kernel)
    return found
