"""A user's own model: `module:callable` (called with no arguments), or a Python object.

The lab names every model by a string (records and config files are JSON), so a factory
or module handed over from Python is registered under a name of its own here; an
`nn.Module` instance is deep-copied for every run, so every run starts from its weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from optimlab._imports import import_object, is_import_path

# name -> factory, for objects handed over from Python (this process only)
_REGISTERED: dict[str, Callable[[], nn.Module]] = {}


def register(model: nn.Module | Callable[[], nn.Module]) -> str:
    """A name under which `build` finds `model` (a module, deep-copied per run, or a
    no-argument factory)."""
    if isinstance(model, nn.Module):
        factory: Callable[[], nn.Module] = lambda: copy.deepcopy(model)  # noqa: E731
        kind = type(model).__name__
    elif callable(model):
        factory, kind = model, getattr(model, "__name__", type(model).__name__)
    else:
        raise TypeError(f"Invalid model {model!r}; allowed: a model name, an nn.Module, or a "
                        "callable with no arguments returning one")
    name = f"python:{kind}#{len(_REGISTERED) + 1}"
    _REGISTERED[name] = factory
    return name


def is_user_model(name: str) -> bool:
    return name in _REGISTERED or is_import_path(name)


def build_user(name: str) -> nn.Module:
    """The model `name` makes (a registered object or `module:callable`)."""
    if name in _REGISTERED:
        factory: Any = _REGISTERED[name]
    else:
        try:
            factory = import_object(name)
        except ValueError as e:
            raise ValueError(f"Invalid model {name!r}: {e}") from None
        if not callable(factory):
            raise ValueError(f"Invalid model {name!r}: a {type(factory).__name__}, not a "
                             "callable; allowed: a callable with no arguments returning an "
                             "nn.Module")
    try:
        model = factory()
    except TypeError as e:
        raise ValueError(f"Invalid model {name!r}: calling it with no arguments failed: "
                         f"{e}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model {name!r}: it returned a {type(model).__name__}; "
                         "allowed: an nn.Module")
    return model
