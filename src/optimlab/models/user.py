"""A user's own model: `module:callable` (called with no arguments), or a Python object.

The lab names every model by a string (records and config files are JSON): a factory
handed over from Python keeps its import path when it has one, else it is registered
under a name of its own (`optimlab._imports.register_object`); an `nn.Module` instance is
deep-copied for every run, so every run starts from its weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from optimlab._imports import import_object, is_import_path, register_object


def register(model: nn.Module | Callable[[], nn.Module]) -> str:
    """A name under which `build` finds `model`: a factory's own import path when it has
    one (`module:function`), else a registered name; a module is deep-copied per run."""
    if isinstance(model, nn.Module):
        def copy_of_model() -> nn.Module:
            return copy.deepcopy(model)
        copy_of_model.__name__ = type(model).__name__
        return register_object(copy_of_model)
    if callable(model):
        return register_object(model)
    raise TypeError(f"Invalid model {model!r}; allowed: a model name, an nn.Module, or a "
                    "callable with no arguments returning one")


def is_user_model(name: str) -> bool:
    return is_import_path(name)


def build_user(name: str) -> nn.Module:
    """The model `name` makes (`module:callable` or a registered object)."""
    try:
        factory: Any = import_object(name)
    except ValueError as e:
        raise ValueError(f"Invalid model {name!r}: {e}") from None
    if not callable(factory):
        raise ValueError(f"Invalid model {name!r}: an object of type {type(factory).__name__}, "
                         "not a callable; allowed: a callable with no arguments returning an "
                         "nn.Module")
    try:
        model = factory()
    except TypeError as e:
        raise ValueError(f"Invalid model {name!r}: calling it with no arguments failed: "
                         f"{e}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model {name!r}: it returned an object of type "
                         f"{type(model).__name__}; allowed: an nn.Module")
    return model
