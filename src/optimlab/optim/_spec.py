"""The specification of an optimizer: all that the rest of optimlab may know about it.

Each optimizer's file ends with ``SPEC = register(OptimizerSpec(...))`` next to its class.
The registry (`registered`, read by ``optimlab.optim.SPECS``) is the only list of
optimizer names: the CLI's choices, the sweep's grid keys, the batched executor, the
bench and the tests all read the specifications and never name an optimizer in a table.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from optimlab.kernels.formula import Formula

# Keyword arguments of every class that choose how it runs, not what it computes.
RUN_OPTIONS = ("foreach", "fused", "nonfinite")


def as_number(name: str, x: Any) -> float:
    """A hyperparameter as a Python float (a float, an int or a one-element tensor)."""
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"Invalid {name}: a tensor {name} must have one element, got shape "
                             f"{tuple(x.shape)}")
        return float(x.item())
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"Invalid {name}: {x!r} ({type(x).__name__}); expected a float "
                        "or a 0-d tensor")
    return float(x)


SCALES = ("log", "log1m", "linear")


@dataclass(frozen=True)
class Number:
    """A real hyperparameter in [lo, hi) (hi = inf: any finite number >= lo).

    scale: how a search spreads its values (random search samples uniformly in it):
    "log" (log x: η, ε, weight decay span decades), "log1m" (log(1 - x): a decay rate's
    memory 1/(1 - β) spans decades, 0.9 to 0.999 as far as 0.09 to 0.9), "linear" (x).
    """

    lo: float = 0.0
    hi: float = math.inf
    scale: str = "linear"

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"Invalid scale: {self.scale!r}; allowed: {', '.join(SCALES)}")

    def allowed(self, name: str) -> str:
        if math.isinf(self.hi):
            return f"a finite number >= {self.lo:g}"
        return f"{self.lo:g} <= {name} < {self.hi:g}"

    def check(self, name: str, x: Any) -> None:
        v = as_number(name, x)
        if not (self.lo <= v < self.hi and math.isfinite(v)):
            raise ValueError(f"Invalid {name}: {v}; allowed: {self.allowed(name)}")


@dataclass(frozen=True)
class Flag:
    """An on/off option."""

    def allowed(self, name: str) -> str:
        return "True or False"

    def check(self, name: str, x: Any) -> None:
        if not isinstance(x, bool):
            raise ValueError(f"Invalid {name}: {x!r}; allowed: {self.allowed(name)}")


@dataclass(frozen=True)
class Pair:
    """Two numbers with their own names (Adam's ``betas`` = (beta1, beta2)), each in `each`."""

    names: tuple[str, str]
    each: Number = Number(0.0, 1.0, "log1m")

    def allowed(self, name: str) -> str:
        return f"a pair ({', '.join(self.names)}), each in [{self.each.lo:g}, {self.each.hi:g})"

    def check(self, name: str, x: Any) -> None:
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise ValueError(f"Invalid {name}: {x!r}; allowed: a pair ({', '.join(self.names)})")
        for i, v in enumerate(x):
            self.each.check(f"{name}[{i}]", v)


@dataclass(frozen=True)
class Integer:
    """A whole number in [lo, hi) (an iteration count: Muon's ``ns_steps``)."""

    lo: int
    hi: int

    def allowed(self, name: str) -> str:
        return f"an integer, {self.lo} <= {name} < {self.hi}"

    def check(self, name: str, x: Any) -> None:
        if isinstance(x, bool) or not isinstance(x, int) or not self.lo <= x < self.hi:
            raise ValueError(f"Invalid {name}: {x!r}; allowed: {self.allowed(name)}")


@dataclass(frozen=True)
class Numbers:
    """A fixed count of finite numbers that only make sense together (Muon's
    ``ns_coefficients`` (a, b, c)): one option, never searched."""

    count: int

    def allowed(self, name: str) -> str:
        return f"a tuple of {self.count} finite numbers"

    def check(self, name: str, x: Any) -> None:
        if not isinstance(x, (tuple, list)) or len(x) != self.count:
            raise ValueError(f"Invalid {name}: {x!r}; allowed: {self.allowed(name)}")
        for i, v in enumerate(x):
            Number(-math.inf).check(f"{name}[{i}]", v)


@dataclass(frozen=True)
class Choice:
    """One of a few values (names, or None)."""

    values: tuple[Any, ...]

    def allowed(self, name: str) -> str:
        return ", ".join(map(repr, self.values))

    def check(self, name: str, x: Any) -> None:
        if not any(type(x) is type(v) and x == v for v in self.values):
            raise ValueError(f"Invalid {name}: {x!r}; allowed: {self.allowed(name)}")


Allowed = Number | Flag | Pair | Integer | Numbers | Choice
NONNEG = Number(scale="log")        # lr, eps, weight_decay, ...
UNIT = Number(0.0, 1.0, "log1m")    # decay rates: momentum, alpha, betas


@dataclass(frozen=True)
class Batched:
    """What K configurations of the optimizer may vary when they step at once over stacked
    parameters (`optimlab.optim.batched`; the update is the formula's element on the
    stacked tensors).

    Hyperparameters in `per_member` may differ between members (a `Pair` as its two
    names); a term zero for every member is skipped by the formula's flags;
    those in `shared` must be one value for every member. Any other hyperparameter must
    keep its default. An optimizer without a formula brings its own `update`.
    """

    per_member: tuple[str, ...]
    shared: tuple[str, ...] = ()
    # for an optimizer whose update is no formula (Muon's matrices), what makes the step of
    # K members: update(params, members) -> step(params, grads, state, t), members[k] all
    # of member k's options; made once per batch of members (again when it is compacted)
    update: Callable[..., Any] | None = None


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything about one optimizer that the lab, the bench and the CLI use.

    name: the lab's and the CLI's name ("adam");
    cls: the ``torch.optim.Optimizer`` class; its signature holds the defaults;
    hyperparameters: each keyword a user may set (every keyword of ``cls`` but
        ``params`` and `RUN_OPTIONS`) and its allowed values; the class validates with it;
    formula: its update, written once (`optimlab.kernels.formula`), from which every path
        is derived; its name is the kernel's;
    batched: what its members may vary when K of them step at once (None: the vectorized
        executor cannot run it);
    peer: the torch.optim class and keyword arguments that do the same update with the
        same memory traffic as ``cls()`` at its defaults (what the bench times it against),
        or the `module:Class` path of a published class outside torch (an optional
        dependency: the bench imports it if it is installed);
    lecture: one of the lecture's optimizers (the default set of compare, sweep, ...);
    search: its default search space, {flat key: (lo, hi)} (a `Pair` as its two names),
        each sampled on its hyperparameter's `Number.scale` (random search, see
        optimlab.lab.search; the ranges and their source: docs/lab.md, "Random search");
    decays_lr: how its own update shrinks the step over a run at a fixed η ("": it does
        not); a comparison's fairness audit names it, as it names a schedule.
    """

    name: str
    cls: type[torch.optim.Optimizer]
    hyperparameters: Mapping[str, Allowed]
    formula: Formula | None
    batched: Batched | None
    peer: tuple[type[torch.optim.Optimizer] | str, dict[str, Any]]
    lecture: bool = False
    search: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    decays_lr: str = ""
    defaults: dict[str, Any] = field(init=False, repr=False)

    @property
    def kernel(self) -> str | None:
        """The name of its fused kernel in ``optimlab.kernels`` (None: no fused path)."""
        return self.formula.name if self.formula is not None else None

    def __post_init__(self) -> None:
        sig = inspect.signature(self.cls)
        defaults = {k: p.default for k, p in sig.parameters.items()
                    if k != "params" and k not in RUN_OPTIONS}
        if set(defaults) != set(self.hyperparameters):
            raise TypeError(f"{self.name}: the hyperparameters {sorted(self.hyperparameters)} "
                            f"must be the keywords of {self.cls.__name__}: {sorted(defaults)}")
        object.__setattr__(self, "defaults", defaults)
        for key, (lo, hi) in self.search.items():
            if not lo < hi:
                raise ValueError(f"{self.name}: search range of {key} {lo:g}:{hi:g}; allowed: "
                                 "lo < hi")
            self.number(key).check(key, lo)
            self.number(key).check(key, hi)

    def number(self, key: str) -> Number:
        """The allowed range of flat key `key` (beta1 and beta2: their `Pair`'s `each`);
        KeyError when it is no real hyperparameter of this optimizer."""
        for name, kind in self.hyperparameters.items():
            if isinstance(kind, Pair) and key in kind.names:
                return kind.each
            if name == key and isinstance(kind, Number):
                return kind
        raise KeyError(key)

    def check(self, kwargs: Mapping[str, Any]) -> None:
        """One-line ValueError/TypeError for an unknown keyword or a value out of its range."""
        for key, x in kwargs.items():
            if key not in self.hyperparameters:
                raise ValueError(f"Invalid hyperparameter {key!r} for {self.name}; allowed: "
                                 f"{', '.join(self.hyperparameters)}")
            self.hyperparameters[key].check(key, x)

    def flat_keys(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """`keys` with every `Pair` replaced by its two names (betas → beta1, beta2)."""
        out: list[str] = []
        for key in keys:
            kind = self.hyperparameters[key]
            out.extend(kind.names if isinstance(kind, Pair) else (key,))
        return tuple(out)

    def flatten(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments with each `Pair` split into its two names."""
        out: dict[str, Any] = {}
        for key, x in kwargs.items():
            kind = self.hyperparameters.get(key)
            if isinstance(kind, Pair):
                out.update(zip(kind.names, x, strict=True))
            else:
                out[key] = x
        return out

    def unflatten(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """The inverse of `flatten`; a pair's missing half keeps its default."""
        out = dict(flat)
        for key, kind in self.hyperparameters.items():
            if isinstance(kind, Pair) and any(n in out for n in kind.names):
                out[key] = [out.pop(n, d) for n, d in zip(kind.names, self.defaults[key],
                                                          strict=True)]
        return out


registered: list[OptimizerSpec] = []


def register(spec: OptimizerSpec) -> OptimizerSpec:
    """Add `spec` to the registry and bind its class to it (the class validates with it)."""
    if any(s.name == spec.name for s in registered):
        raise ValueError(f"an optimizer named {spec.name!r} is registered already")
    spec.cls.spec = spec  # type: ignore[attr-defined]
    registered.append(spec)
    return spec
