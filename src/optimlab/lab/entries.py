"""Optimizer entries: `[LABEL=]NAME[(key=value, ...)]`, one run family each.

- `NAME`: a built-in optimizer (`adam`) or the import path `module:Class` of any
  `torch.optim.Optimizer` subclass (`torch.optim:NAdam`, `mypkg.opt:Sophia`);
- `key=value`: hyperparameters (a built-in's: those of its specification, `optimlab.optim.
  SPECS`; another class's: its keyword arguments), values as Python literals
  (`betas=(0.5, 0.999)`, `nesterov=True`), read with `ast.literal_eval`;
- `LABEL=`: the family's name in run names, tables and plots. Without it, the label is
  the entry as written (`adam(betas=(0.5, 0.999))`); for an import path, its class name.

A list is comma-separated; commas inside brackets belong to the entry:
`"adam, slow=adam(betas=(0.5, 0.999)), torch.optim:NAdam(lr=2e-3)"`.

Every entry is checked before anything trains: the class resolves, every key is one
the class accepts, and the class's own validation accepts the values (a range error is
the optimizer's own message).
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optimlab._dynamo import dynamo_not_imported
from optimlab._imports import is_import_path
from optimlab.optim import optimizer_class

# A label names runs, files and plot legends: letters of any script, digits, _ . + -
# (`\w` is Unicode in Python's re: "Ädäm" and "σ-adam" are labels).
LABEL = re.compile(r"^\w[\w.+-]*$")
# Constructor arguments that are not hyperparameters: what the optimizer updates.
_NOT_HYPERPARAMETERS = ("params", "self")


@dataclass(frozen=True)
class Entry:
    """One optimizer entry: what to build and what to call it."""

    name: str  # a built-in name or module:Class
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # as the entry gives them
    label: str = ""  # "" means the default label (see `default_label`)

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", default_label(self.name, self.hyperparameters))

    @property
    def text(self) -> str:
        """The entry written out again (parses back to an equal entry)."""
        call = _call(self.name, self.hyperparameters)
        default = self.label == default_label(self.name, self.hyperparameters)
        return call if default else f"{self.label}={call}"

    def optimizer_class(self) -> type:
        return optimizer_class(self.name)


def _call(name: str, hyperparameters: dict[str, Any]) -> str:
    """`name(k=v, ...)` with the values as Python literals; `name` alone without any."""
    args = ", ".join(f"{k}={v!r}" for k, v in hyperparameters.items())
    return f"{name}({args})" if args else name


def default_label(name: str, hyperparameters: dict[str, Any]) -> str:
    short = name.split(":")[-1].split(".")[-1] if is_import_path(name) else name
    return _call(short, hyperparameters)


def split_list(text: str) -> list[str]:
    """`text` cut at the commas outside brackets and quotes; blank pieces dropped."""
    pieces, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    if depth != 0 or quote:
        raise ValueError(f"Invalid optimizer list {text!r}: unbalanced brackets or quotes")
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def _keywords(entry: str, args: str) -> dict[str, Any]:
    """`key=value, ...` as a dict of Python literals."""
    try:
        call = ast.parse(f"f({args})", mode="eval").body
    except SyntaxError:
        raise ValueError(f"Invalid optimizer entry {entry!r}: its arguments are not "
                         "key=value pairs") from None
    assert isinstance(call, ast.Call)
    if call.args or any(k.arg is None for k in call.keywords):
        raise ValueError(f"Invalid optimizer entry {entry!r}: arguments must be key=value")
    out = {}
    for k in call.keywords:
        try:
            out[str(k.arg)] = ast.literal_eval(k.value)
        except (ValueError, SyntaxError):
            raise ValueError(f"Invalid value for {k.arg} in {entry!r}: "
                             f"{ast.unparse(k.value)!r} is not a Python literal") from None
    return out


def parse(text: str) -> Entry:
    """One entry, syntax only (see `check` for the class and values)."""
    entry = text.strip()
    paren = entry.find("(")
    head, args = (entry, "") if paren < 0 else (entry[:paren], entry[paren:])
    label, sep, name = head.partition("=")
    if not sep:
        label, name = "", head
    label, name = label.strip(), name.strip()
    if args and not (args.endswith(")") and args.count("(") == args.count(")")):
        raise ValueError(f"Invalid optimizer entry {entry!r}; allowed: "
                         "[LABEL=]NAME[(key=value, ...)]")
    if sep and not LABEL.match(label):
        raise ValueError(f"Invalid label {label!r} in {entry!r}; allowed: letters (any "
                         "script), digits and _ . + -, starting with a letter, digit or _")
    if not name:
        raise ValueError(f"Invalid optimizer entry {entry!r}: no optimizer name; allowed: "
                         "[LABEL=]NAME[(key=value, ...)]")
    return Entry(name, _keywords(entry, args[1:-1]) if args else {}, label)


def allowed_hyperparameters(cls: type) -> tuple[str, ...] | None:
    """The keyword arguments `cls(params, ...)` accepts; None when it takes **kwargs."""
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.name not in _NOT_HYPERPARAMETERS and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def class_defaults(cls: type) -> dict[str, Any]:
    """The keyword defaults of an optimizer class."""
    return {k: p.default for k, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _spec(name: str) -> Any:
    """The specification of built-in optimizer `name` (None for an import path)."""
    from optimlab.optim import SPECS

    return SPECS.get(name)


def check_hyperparameters(entry: Entry, cls: type, hyperparameters: dict[str, Any]) -> None:
    """Every key is a hyperparameter of the optimizer (a built-in's: its specification's;
    another class's: its keywords) and the class accepts the values (its own validation,
    which for a built-in is its specification's ranges)."""
    import torch

    spec = _spec(entry.name)
    allowed = tuple(spec.hyperparameters) if spec is not None else allowed_hyperparameters(cls)
    unknown = [k for k in hyperparameters if allowed is not None and k not in allowed]
    if unknown:
        raise ValueError(f"Invalid hyperparameter {unknown[0]!r} of {entry.name} in "
                         f"{entry.text!r}; allowed: {', '.join(allowed or ())}")
    try:
        with dynamo_not_imported():
            cls([torch.zeros(1, requires_grad=True)], **hyperparameters)
    except Exception as e:  # the class's own check: its message, on one line
        raise ValueError(f"Invalid {entry.text!r}: {' '.join(str(e).split())}") from None


def check(entry: Entry) -> Entry:
    """`entry` after resolving its class and checking its hyperparameters."""
    try:
        cls = entry.optimizer_class()
    except ValueError as e:
        where = "" if entry.text == entry.name else f" in {entry.text!r}"
        said = str(e).removeprefix(f"Invalid optimizer {entry.name!r}: ")  # said once
        raise ValueError(f"Invalid optimizer {entry.name!r}{where}: {said}") from None
    check_hyperparameters(entry, cls, entry.hyperparameters)
    return entry


def parse_list(spec: str | Iterable[str | Entry]) -> tuple[Entry, ...]:
    """Checked entries from a comma-separated string or a list of entries/strings;
    labels must be distinct (each is a run family)."""
    items: Sequence[str | Entry] = split_list(spec) if isinstance(spec, str) else list(spec)
    entries = tuple(check(e if isinstance(e, Entry) else parse(str(e))) for e in items)
    if not entries:
        raise ValueError(f"Invalid optimizers {spec!r}: no entry; allowed: a comma-separated "
                         "list of [LABEL=]NAME[(key=value, ...)]")
    seen: set[str] = set()
    for e in entries:
        if e.label in seen:
            raise ValueError(f"Invalid optimizers: label {e.label!r} appears twice; give one "
                             "of them a LABEL= in front (e.g. slow=adam(betas=(0.5, 0.999)))")
        seen.add(e.label)
    return entries


def texts(entries: Iterable[Entry]) -> tuple[str, ...]:
    return tuple(e.text for e in entries)


def with_label(entry: Entry, hyperparameters: dict[str, Any]) -> str:
    """`LABEL=NAME(k=v, ...)` with the label written out: the same run family with
    `hyperparameters` (e.g. η made explicit) under the same name."""
    return f"{entry.label}={_call(entry.name, hyperparameters)}"


def learning_rate(entry: Entry, given: dict[str, float], lab_defaults: dict[str, float]
                  ) -> float:
    """η of a run family: the entry's own `lr`, else `given[label]` (--lr), else the lab's
    default for the optimizer, else its class's default."""
    if "lr" in entry.hyperparameters:
        return float(entry.hyperparameters["lr"])
    if entry.label in given:
        return float(given[entry.label])
    if entry.name in lab_defaults:
        return lab_defaults[entry.name]
    lr = class_defaults(entry.optimizer_class()).get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return float(lr)
    raise ValueError(f"Invalid optimizer entry {entry.text!r}: its class has no default lr; "
                     f"allowed: give one, e.g. {entry.name}(lr=1e-3)")
