"""Fast paths for the optimizer updates.

`get(kind)` returns the fused kernel named `kind` (an optimizer specification's
`kernel`), a function with the exact signature of the optimizer's reference update
plus an optional keyword `layout`. `fused_layout(kind, params, grads, previous)` is
the check the optimizers run every step: it returns the backend's layout of the
group (what the kernels need to know about the parameters, reused from `previous`
while it holds), to pass to the kernel as `layout=`, or the reason string why the
kernel cannot run there.

Kernels live in backends, one per device type, listed in `BACKENDS`: a module
with `layout(kind, params, grads, previous=None) -> Layout | str` (which also
checks that all parameters are on its device) and `KERNELS = {kind: fn}`. The CPU backend
is numba (`numba_cpu`), the CUDA backend Triton (`triton_cuda`): `get` dispatches on
the parameters' device at call time, so the optimizer classes never name a
backend. A backend with `UNSCALES = True` takes GradScaler's `grad_scale=` tensor
and divides it out inside its kernels. `batched(kind, device_type, members)` is a
kind's step of K members stacked over a leading dim (a sweep's `BatchedOptimizer`), where
the backend has one (`numba_cpu.batched`). Backends are imported on first use, so
`import optimlab` does not pay for numba or triton.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch

# device type -> backend module
BACKENDS = {"cpu": "optimlab.kernels.numba_cpu", "cuda": "optimlab.kernels.triton_cuda"}


# backend module name -> the module, once its import has finished
_loaded: dict[str, ModuleType] = {}


def backend(device_type: str) -> ModuleType:
    """The backend module for a device type; ImportError if its compiler is missing."""
    # Every step asks: once imported, dict lookups instead of importlib's machinery. A module
    # in sys.modules alone may still be importing in another thread (the sweep's groups side
    # by side), without its kernels yet: that thread would step through the torch ops and
    # round otherwise; importlib waits for the import to finish.
    name = BACKENDS[device_type]
    module = sys.modules.get(name)
    if module is None or _loaded.get(name) is not module:
        module = _loaded[name] = importlib.import_module(name)
    return module


def unscales(device_type: str) -> bool:
    """Whether the fused kernels on this device unscale GradScaler's gradients themselves."""
    return bool(getattr(backend(device_type), "UNSCALES", False))


def fused_layout(kind: str | None, params: list[torch.Tensor],
                 grads: Sequence[torch.Tensor | None],
                 previous: Any = None) -> Any:
    """The backend's layout of this group for the kernel of `kind`, or why it cannot run."""
    if kind is None:
        return "this param group's update has no fused kernel"
    if not params:
        return None
    device = params[0].device.type  # the backend checks that the others share it
    if device not in BACKENDS:
        return (f"no fused kernels for device {device!r} yet (available: "
                f"{', '.join(BACKENDS)}); the foreach path runs there")
    try:
        module = backend(device)
    except ImportError as e:
        return f"the {device} backend cannot load ({e})"
    if kind not in module.KERNELS:
        return f"no fused kernel named {kind!r} on {device}; known: {', '.join(module.KERNELS)}"
    return module.layout(kind, params, grads, previous)


def batched(kind: str | None, device_type: str, members: Sequence[dict[str, Any]]) -> Any:
    """The backend's batched step of `kind` for K members stacked on `device_type`
    (`members[k]`: member k's keyword arguments as the kernel functions take them), or why
    there is none: an object with `unavailable(params, grads)`, the reason it cannot step
    these stacked tensors (None: it can), and `run(params, grads, lists, t)`."""
    if kind is None:
        return "this optimizer has no fused kernel"
    if device_type not in BACKENDS:
        return f"no fused kernels for device {device_type!r}"
    try:
        module = backend(device_type)
    except ImportError as e:
        return f"the {device_type} backend cannot load ({e})"
    if not hasattr(module, "batched"):
        return f"no batched fused kernels on {device_type}"
    if kind not in module.KERNELS:
        return f"no fused kernel named {kind!r} on {device_type}"
    return module.batched(kind, members)


def known() -> tuple[str, ...]:
    """The kernel names of the CPU backend (every kernel has one there) and of any other
    backend already loaded; loading one to check a name would cost a compiler's import."""
    names: dict[str, None] = {}
    for device, module in BACKENDS.items():
        if device != "cpu" and module not in sys.modules:
            continue
        try:
            names.update(dict.fromkeys(backend(device).KERNELS))
        except ImportError:
            continue
    return tuple(names)


@functools.cache
def get(kind: str) -> Callable[..., None]:
    """The fused update of `kind`, dispatching on the parameters' device."""
    if kind not in known():
        raise ValueError(f"Invalid kind: {kind!r}; allowed: {', '.join(map(repr, known()))}")

    def fused(params: list[torch.Tensor], *args: Any, **kwargs: Any) -> None:
        if params:
            backend(params[0].device.type).KERNELS[kind](params, *args, **kwargs)

    fused.__name__ = fused.__qualname__ = f"{kind}_fused"
    fused.__doc__ = f"Fused {kind} update: the arguments of `{kind}_reference`."
    return fused
