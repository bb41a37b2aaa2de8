"""The optimizers, in the lecture's order: SGD → Momentum → RMSprop → Adam (→ AdamW), then
AdaGrad (the method RMSprop repairs).

Each is a drop-in `torch.optim.Optimizer`. Every class has a per-tensor
reference update (`foreach=False`), a multi-tensor path (`foreach=True`) and,
where it applies, a fused single-pass kernel (`fused=True`); the default picks
the fastest that applies. `opt.last_impl` says which ran for each param group.

Each optimizer's file ends with its specification (`OptimizerSpec`), registered on
import: importing the file here is its one registration line. `SPECS` (name →
specification, in import order) is the only list of optimizer names.
"""

# ruff: noqa: I001 - the imports register the optimizers: their order is the lecture's
# ("X as X" re-exports a class: `__all__` lists the classes from the registry)
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from optimlab._imports import import_object, is_import_path
from optimlab.optim._spec import OptimizerSpec, registered
from optimlab.optim.sgd import SGD as SGD, sgd_foreach, sgd_reference
from optimlab.optim.momentum import Momentum as Momentum, momentum_foreach, momentum_reference
from optimlab.optim.rmsprop import RMSprop as RMSprop, rmsprop_foreach, rmsprop_reference
from optimlab.optim.adam import Adam as Adam, AdamW as AdamW, adam_foreach, adam_reference
from optimlab.optim.adagrad import Adagrad as Adagrad
from optimlab.optim.lion import Lion as Lion
from optimlab.optim.nadam import NAdam as NAdam
from optimlab.optim.schedulefree import AdamWScheduleFree as AdamWScheduleFree
from optimlab.optim.muon import Muon as Muon

SPECS: dict[str, OptimizerSpec] = {spec.name: spec for spec in registered}
# name -> class, for the lab and the CLI
OPTIMIZERS = {name: spec.cls for name, spec in SPECS.items()}
# the lecture's optimizers: the default set of compare, sweep, landscape and bench
LECTURE = tuple(name for name, spec in SPECS.items() if spec.lecture)


def optimizer_class(name: str) -> type:
    """A built-in optimizer's class by name, or any `torch.optim.Optimizer` subclass by
    import path (`torch.optim:NAdam`); ValueError saying what is wrong."""
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    if not is_import_path(name):
        raise ValueError(f"Invalid optimizer {name!r}: no such built-in optimizer; allowed: "
                         f"{', '.join(OPTIMIZERS)} or module:Class of a torch.optim.Optimizer "
                         "(e.g. torch.optim:NAdam)")
    cls = import_object(name)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        what = f"the class {cls.__name__}" if isinstance(cls, type) else \
            f"an object of type {type(cls).__name__}"
        raise ValueError(f"{name} is {what}, not a torch.optim.Optimizer subclass")
    return cls


def modes(optimizer: Any) -> tuple[Callable[[], Any], Callable[[], Any]] | None:
    """The optimizer's `eval` and `train` methods, where it has both (Schedule-Free's: ours,
    the package's, or a user's own): it trains at one point and is evaluated at another,
    its averaged weights. None for an optimizer without them (torch.optim's)."""
    to_eval, to_train = getattr(optimizer, "eval", None), getattr(optimizer, "train", None)
    return (to_eval, to_train) if callable(to_eval) and callable(to_train) else None


@contextmanager
def evaluating(optimizer: Any) -> Iterator[None]:
    """The optimizer in its eval mode inside the block and back in its train mode after it
    (an exception included), where it has both (`modes`); else nothing changes."""
    found = modes(optimizer)
    if found is None:
        yield
        return
    to_eval, to_train = found
    to_eval()
    try:
        yield
    finally:
        to_train()


__all__ = [
    "SPECS", "OPTIMIZERS", "LECTURE", "OptimizerSpec", "optimizer_class", "modes", "evaluating",
    *(spec.cls.__name__ for spec in SPECS.values()),
    "sgd_reference", "sgd_foreach", "momentum_reference", "momentum_foreach",
    "rmsprop_reference", "rmsprop_foreach", "adam_reference", "adam_foreach",
]
