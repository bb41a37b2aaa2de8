"""Fast paths for the optimizer updates.

`fused_unavailable(kind, params, group)` says why the fused kernel of `kind`
("sgd", "momentum", "rmsprop", "adam") cannot run on these parameters (None
when it can); `get(kind)` returns that kernel, a function with the exact
signature of the optimizer's reference update.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def fused_unavailable(kind: str, params: list[torch.Tensor], group: dict[str, Any]) -> str | None:
    return "fused CPU kernels are not part of this build yet"


def get(kind: str) -> Callable[..., None]:
    raise RuntimeError(f"no fused kernel for {kind!r}: {fused_unavailable(kind, [], {})}")
