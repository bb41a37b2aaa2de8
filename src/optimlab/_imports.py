"""Resolve a user's `module:attribute` import path, only when the user names one.

The module is looked up on `sys.path` and in the current directory (the `optimlab`
console script does not put the current directory on `sys.path` by itself). Failures
are `ValueError`s of one line that name what is missing. `optional` imports a module of
an optional extra, or says in one line how to install it.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

# `pkg.module:attr.sub`: dotted identifiers on both sides of one colon.
PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_import_path(text: str) -> bool:
    return isinstance(text, str) and bool(PATH.match(text))


def _module(name: str) -> Any:
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # after the installed packages: never shadows them
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise ValueError(f"no module named {e.name!r} on sys.path or in the current "
                             f"directory {os.getcwd()}") from None
        raise ValueError(f"importing {name!r} failed: {e}") from None
    except Exception as e:  # the user's module raised while importing: say what, one line
        raise ValueError(f"importing {name!r} failed: {type(e).__name__}: {e}") from None


# Objects handed over from Python that no import path reaches (a class defined inside a
# function), by the name `register_object` gave them: this process only.
_REGISTERED: dict[str, Any] = {}


def register_object(obj: Any) -> str:
    """An import path that `import_object` resolves to `obj`: its own `module:qualname`
    when that reaches it (a notebook's classes live in `__main__`), else a registered name
    `python:NAME_N`."""
    path = f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"
    if is_import_path(path):
        try:
            if import_object(path) is obj:
                return path
        except ValueError:
            pass
    for name, known in _REGISTERED.items():
        if known is obj:
            return name
    short = re.sub(r"\W", "_", getattr(obj, "__name__", type(obj).__name__)).strip("_")
    name = f"python:{short or 'object'}_{len(_REGISTERED) + 1}"
    _REGISTERED[name] = obj
    return name


def import_object(path: str) -> Any:
    """The object at `module:attr` (attr may be dotted); ValueError naming what is missing."""
    if path in _REGISTERED:
        return _REGISTERED[path]
    if not is_import_path(path):
        raise ValueError(f"{path!r} is not an import path; allowed: module:attribute "
                         "(e.g. torch.optim:NAdam)")
    module_name, attr = path.split(":")
    obj = _module(module_name)
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = module_name if i == 0 else f"{module_name}:{'.'.join(attr.split('.')[:i])}"
            raise ValueError(f"module {owner!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def optional(module: str, missing: str) -> Any:
    """`module` (of an optional extra) imported, or an ImportError of the one line `missing`,
    which says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(missing) from None
