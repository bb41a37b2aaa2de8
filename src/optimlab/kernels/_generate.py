"""What the fused backends share to write their kernels from a `Formula`.

Each backend writes a module of source from the formula's element (numba's
`_numba_formula`, Triton's `_triton_kernels`): both need to know which of the element's
keyword arguments are scalars, terms and flags (`names`), the element with those made
positional (`positional`: numba inlines only positional calls), and the module written to
a file and imported from there (`written`): numba's on-disk cache and Triton's `jit` both
read the source of what they compile from its file. Each backend's `KERNELS` is a
`Kernels`: an update for every formula made so far, with nothing to add per optimizer.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from optimlab.kernels.formula import FORMULAS, Formula, Kw


@dataclass(frozen=True)
class Names:
    """The element's keyword arguments by kind, in its order."""

    columns: tuple[str, ...]  # scalars: the hyperparameter columns after the sign
    terms: tuple[str, ...]
    flags: tuple[str, ...]


def names(formula: Formula, kw: Kw) -> Names:
    """Which keyword arguments are scalars, terms and flags, from what the formula gives for
    `kw`; TypeError unless they are exactly the element's keyword arguments."""
    scalars, flags = set(formula.scalars(kw)), set(formula.flags(kw))
    terms = set(formula.terms(kw, 1)) if formula.terms is not None else set()
    keywords = formula.keywords()
    if set(keywords) != scalars | flags | terms or len(keywords) != len(scalars) + len(
            flags) + len(terms):
        raise TypeError(f"{formula.name}: scalars, terms and flags must be the element's "
                        f"keyword arguments {list(keywords)}")
    return Names(tuple(k for k in keywords if k in scalars),
                 tuple(k for k in keywords if k in terms),
                 tuple(k for k in keywords if k in flags))


def positional(source: str, helper: Callable[..., Any] | None = None) -> str:
    """A part's source with its keyword-only arguments made positional, in their order,
    and its calls of `helper` (the formula's denominator) made positional too."""
    fn = ast.parse(source).body[0]
    assert isinstance(fn, ast.FunctionDef)
    fn.args.args += fn.args.kwonlyargs
    fn.args.kwonlyargs, fn.args.kw_defaults = [], []
    if helper is not None:
        order = list(inspect.signature(helper).parameters)
        for call in ast.walk(fn):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                    and call.func.id == helper.__name__):
                given = {k.arg: k.value for k in call.keywords}
                call.args = [*call.args, *(given[k] for k in order[len(call.args):])]
                call.keywords = []
    return ast.unparse(fn) + "\n"


def parts(formula: Formula, decorator: str) -> str:
    """The formula's parts (denominator, element), positional, each under `decorator`."""
    return "\n\n".join(decorator + positional(formula.source(fn), formula.denominator)
                        for fn in formula.parts())


def written(prefix: str, formula: Formula, text: str) -> ModuleType:
    """`text` as a module named after `prefix`, the formula and the text's digest, written
    to the kernels' folder (where it is not already) and executed afresh."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    name = f"{prefix}_{formula.name}_{digest}"
    path = _folder() / f"{name}.py"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # whole or absent, whatever runs beside
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _folder() -> Path:
    """Where the kernels' modules live: $OPTIMLAB_KERNEL_DIR, else the user's cache."""
    base = os.environ.get("OPTIMLAB_KERNEL_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "optimlab",
        "kernels")
    path = Path(base)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError:
        path = Path(tempfile.gettempdir()) / f"optimlab-kernels-{os.getuid()}"
        path.mkdir(parents=True, exist_ok=True)
    return path


class Kernels(Mapping[str, Callable[..., None]]):
    """name -> a backend's fused update of every formula made so far (`FORMULAS`):
    `update(name, params, grads, *state_lists, [steps], **kw)` with the name given, a
    drop-in for the formula's reference update (plus the backend's own keywords)."""

    def __init__(self, update: Callable[..., None]):
        self._update = update

    def __getitem__(self, name: str) -> Callable[..., None]:
        if name not in FORMULAS:
            raise KeyError(name)
        return functools.partial(self._update, name)

    def __iter__(self) -> Iterator[str]:
        return iter(FORMULAS)

    def __len__(self) -> int:
        return len(FORMULAS)
