"""Bookkeeping shared by the optimizers: validation, lazy state, dispatch.

The math lives in pure update functions next to each optimizer; this class
only groups parameters, creates state, checks input and picks an
implementation ("reference", "foreach" or "fused") for every param group.
"""

from __future__ import annotations

import collections
import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.optim.optimizer as torch_optimizer
from torch.compiler import is_compiling

from optimlab import kernels
from optimlab.kernels._checks import PLAIN, holds
from optimlab.optim._spec import OptimizerSpec

NONFINITE_MODES = ("apply", "skip", "raise")

# How an update sees a list of tensors: `real_views`, or as they are (no complex ones).
Views = Callable[[Sequence["torch.Tensor | None"]], list[Any]]


def value(x: float | torch.Tensor) -> float:
    """A hyperparameter as a Python float (0-d tensors are allowed)."""
    return float(x.item()) if isinstance(x, torch.Tensor) else float(x)


def check_choice(name: str, x: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if x not in allowed:
        raise ValueError(f"Invalid {name}: {x!r}; allowed: {', '.join(map(repr, allowed))}")


def gradient(w: torch.Tensor, g: torch.Tensor, *, maximize: bool,
             weight_decay: float) -> torch.Tensor:
    """The gradient an update uses: g ← −g when maximizing; g ← g + λw (L2 weight decay)."""
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(w, alpha=weight_decay)
    return g


def gradients(params: list[torch.Tensor], grads: list[torch.Tensor], *, maximize: bool,
              weight_decay: float) -> list[torch.Tensor]:
    """`gradient` for a list of tensors, with torch's multi-tensor ops."""
    if maximize:
        grads = list(torch._foreach_neg(grads))
    if weight_decay != 0:
        grads = list(torch._foreach_add(grads, params, alpha=weight_decay))
    return grads


# Dtypes whose CPU ops compute in float32 and round once to the tensor's dtype.
_REDUCED = (torch.bfloat16, torch.float16)


def scale_(tensors: list[torch.Tensor], factor: float) -> None:
    """tensors ← factor·tensors in place, rounded as each tensor's `mul_(factor)` rounds (the
    per-tensor loop of the reference and of torch.optim's default CPU path). On CPU,
    `_foreach_mul_` with a Python number first rounds it to a bfloat16 or float16 list's
    dtype (0.9 → 0.8984375), where `mul_` keeps it in float32; a 0-d tensor is kept so."""
    if tensors and tensors[0].is_cpu and any(t.dtype in _REDUCED for t in tensors):
        torch._foreach_mul_(tensors, torch.tensor(factor, dtype=torch.float64))
    else:
        torch._foreach_mul_(tensors, factor)


class _StateMap(collections.defaultdict):  # type: ignore[type-arg]
    """`Optimizer.state` (a defaultdict(dict), as torch's), counting in `version` every
    change of which dict a parameter maps to, so that a replayed step may keep the dicts
    it found last step while the count stands (`update`, `|=`, `pop`, … included: the
    dict's own C methods do not go through `__setitem__`)."""

    version = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.version += 1
        super().__delitem__(key)

    def __ior__(self, other: Any) -> Any:  # type: ignore[misc]
        self.version += 1
        return super().__ior__(other)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        super().update(*args, **kwargs)

    def pop(self, *args: Any) -> Any:
        self.version += 1
        return super().pop(*args)

    def popitem(self) -> Any:
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        self.version += 1
        super().clear()


class _Kept:
    """A group's fused step as the last full step settled it (`BaseOptimizer._replay`)."""

    __slots__ = ("group", "layout", "prepare", "call", "snapshot", "lr", "kw", "tensors",
                 "states", "version")

    def __init__(self, group: dict[str, Any], layout: Any, prepare: Callable[..., Any]):
        self.group, self.layout, self.prepare = group, layout, prepare
        self.call: Any = None  # the backend's prepared call, made on the first replay
        # the group's hyperparameters but η, and η, when `kw` was made
        self.snapshot: list[Any] = []
        self.lr: Any = None
        self.kw: dict[str, Any] = {}
        self.tensors = False  # whether a hyperparameter is a tensor
        # the group's state dicts last step, and the optimizer's state map's version then
        self.states: list[dict[str, Any]] | None = None
        self.version = -1


class BaseOptimizer(torch.optim.Optimizer):
    """torch.optim.Optimizer with lazy state and a per-group implementation choice.

    Subclasses define `_init_state(p)`, `_lists(group, params, states)` and
    `_kwargs(group)` (the update's state lists and keyword arguments), `_impls`, their
    "reference" and "foreach" update functions, and optionally `_validate(group)`;
    `spec` (bound by `register`) gives their hyperparameters' ranges and the name of
    their fused kernel.
    """

    _impls: ClassVar[dict[str, Callable[..., None]]] = {}
    _sparse: ClassVar[bool] = False  # whether the reference update takes sparse gradients
    _counts: ClassVar[bool] = False  # whether each state counts its steps t (`_advance`)
    _takes_steps: ClassVar[bool] = False  # whether the update takes the t's, after the lists
    spec: ClassVar[OptimizerSpec]  # bound by `register`

    def __init__(self, params: Any, defaults: dict[str, Any], *, nonfinite: str = "apply"):
        if isinstance(params, torch.Tensor):
            raise TypeError(
                f"Invalid params: a single Tensor of shape {tuple(params.shape)}; allowed: an "
                "iterable of Tensors or of param-group dicts (wrap it: [p])")
        check_choice("nonfinite", nonfinite, NONFINITE_MODES)
        self.nonfinite = nonfinite
        self.skipped_steps = 0  # steps skipped because of non-finite gradients
        self.last_impl: list[str] = []  # implementation taken per param group, last step
        # id(group) -> (group, the fused kernels' layout of it last step), kept so that
        # a step only rechecks what can change (`kernels.fused_layout`)
        self._layouts: dict[int, tuple[dict[str, Any], Any]] = {}
        # id(group) -> (group, its states' `step` tensors, the 1-d tensor they are views of,
        # that tensor's memory as a numpy array)
        self._counters: dict[int, tuple[dict[str, Any], list[torch.Tensor], torch.Tensor,
                                        np.ndarray]] = {}
        # what the last full step settled per group for `_replay`, or None: it did not
        # take the fused path with every parameter in every group
        self._kept: list[_Kept] | None = None
        super().__init__(params, defaults)
        self.state = _StateMap(dict, self.state)
        # torch.amp.GradScaler then neither unscales nor skips for us: it sets `grad_scale`
        # and `found_inf` on the optimizer for step(), which the CUDA kernels unscale in-kernel
        self._step_supports_amp_scaling = True

    # ---- param groups -------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group.get("params")
        if not isinstance(params, (torch.Tensor, set, type(None), list)):
            params = param_group["params"] = list(params)  # a generator can be read once
        if isinstance(params, list) and len(params) != len({id(p) for p in params}):
            raise ValueError("Invalid params: a parameter appears more than once in one "
                             "param group; allowed: each tensor once")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            for i, p in enumerate(group["params"]):
                if not (p.is_floating_point() or p.is_complex()):
                    raise TypeError(f"Invalid params: parameter {i} has dtype {p.dtype}; "
                                    "allowed: floating-point or complex tensors")
            self._check_common(group)
            self._validate(group)
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def _check_common(self, group: dict[str, Any]) -> None:
        spec: OptimizerSpec = self.spec
        spec.check({k: group[k] for k in spec.hyperparameters})
        check_choice("foreach", group["foreach"], (None, True, False))
        check_choice("fused", group["fused"], (None, True, False))
        if group["fused"] and group["foreach"]:
            raise ValueError("Invalid foreach=True with fused=True; allowed: at most one of them")

    def _validate(self, group: dict[str, Any]) -> None:
        """Checks across hyperparameters (each one's own range is checked from the spec)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # A state_dict written by torch.optim lacks our keys: give them defaults.
        for group in self.param_groups:
            for k, v in self.defaults.items():
                group.setdefault(k, v)
        self.__dict__.setdefault("nonfinite", "apply")
        self.__dict__.setdefault("skipped_steps", 0)
        self.__dict__.setdefault("last_impl", [])
        self._layouts = {}
        self._counters = {}
        self._kept = None
        if type(self.state) is not _StateMap:
            self.state = _StateMap(dict, self.state)
        for param, state in self.state.items():
            _lay_out_as(param, state)

    # ---- stepping -----------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Do one optimizer step; returns the closure's loss if a closure is given.

        torch.optim wraps every optimizer's step to run the step hooks and label it for
        torch's profiler; at the lab's model sizes that wrapper costs as much as our
        update. So the wrapper runs only when there is something for it to do: a hook
        registered (on this optimizer or globally) or the profiler on.

        Under torch.compile the step runs outside the graph, as eager code
        (`_outside_graph`): dynamo cannot trace numba's kernels, and would guard on every
        hyperparameter (a scheduler's new η each step would recompile).
        """
        if is_compiling():  # True only while dynamo traces this call
            return _outside_graph(self, closure)
        if (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                or _GLOBAL_HOOKS is None or any(_GLOBAL_HOOKS)
                or torch._C._autograd._profiler_enabled()):
            return _hooked_step(self, *(() if closure is None else (closure,)))
        return self._step(closure)

    step.hooked = True  # type: ignore[attr-defined]  # torch.optim: do not wrap it again

    def _step(self, closure: Callable[[], Any] | None = None) -> Any:
        """`step` itself, without grad (as torch's `@torch.no_grad()`, for less); a replay
        of the last step makes no autograd op, so it runs as it is."""
        if closure is None and self._kept is not None and self._replay(self._kept):
            return None
        enabled = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        try:
            return self._step_no_grad(closure)
        finally:
            torch._C._set_grad_enabled(enabled)

    def _step_no_grad(self, closure: Callable[[], Any] | None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf, grad_scale = getattr(self, "found_inf", None), getattr(self, "grad_scale", None)
        # one host read per step, as GradScaler's own check: the step counters t live here
        if (found_inf is not None and bool(found_inf.item())) or (
                self.nonfinite != "apply" and not self._grads_finite()):
            self.skipped_steps += 1
            return loss
        self.last_impl = []
        layouts: dict[int, tuple[dict[str, Any], Any]] = {}
        kept: list[_Kept] = []
        for group in self.param_groups:
            params, grads, sparse = self._collect(group)
            if not params:
                self.last_impl.append("none")
                continue
            states = self._states(params) if self._needs_state(group) else []
            impl, layout = (self._sparse_impl(group) if sparse
                            else self._choose_impl(group, params, grads))
            self.last_impl.append(impl)
            if layout is not None:
                layouts[id(group)] = (group, layout)
            # the fused kernels take one dtype per group, so there parameter 0 tells
            is_complex = (params[0].is_complex() if impl == "fused"
                          else any(p.is_complex() for p in params))
            fn = self._function(impl, layout, params, grads, grad_scale)
            self._update(group, fn, real_views if is_complex else _unchanged, params, grads,
                         states)
            prepare = getattr(kernels.backend(params[0].device.type), "prepare", None) \
                if impl == "fused" else None
            if (prepare is not None and grad_scale is None and not is_complex
                    and len(params) == len(group["params"])):
                kept.append(_Kept(group, layout, prepare))
        self._layouts = layouts  # only this step's groups: a removed group's tensors go
        self._kept = kept if len(kept) == len(self.param_groups) else None
        return loss

    def _replay(self, kept: list[_Kept]) -> bool:
        """The step of `_step_no_grad` when every group is as the last full step left it
        (False, having changed nothing, when one is not: then the full step runs).

        The same kernel runs with the same arguments: what the full step works out again
        every time (which parameters have a gradient, whether any is sparse, the
        implementation, the layout, the state tensors' checks, the keyword arguments) is
        the backend's prepared call, and what can change between steps is checked as the
        full step checks it: the group and its tensors by identity, the flags that choose
        the path, the non-finite and GradScaler settings, every gradient present, plain
        and contiguous, the layout's and the state tensors' addresses and contiguity, and
        the hyperparameters (by identity: a scheduler's new η makes new arguments).
        """
        groups, attributes = self.param_groups, self.__dict__
        if (len(kept) != len(groups) or self.nonfinite != "apply"
                or attributes.get("found_inf") is not None
                or attributes.get("grad_scale") is not None):
            return False
        keys = self._others
        ready: list[tuple[_Kept, dict[str, Any], list[Any], list[Any], bool]] = []
        for k, group in zip(kept, groups):
            params = group["params"]
            if (k.group is not group or group["fused"] is False or group["foreach"]
                    or not isinstance(params, list)):
                return False
            grads = [p.grad for p in params]
            if not holds(k.layout, params, grads):
                return False
            snapshot, lr = [*map(group.__getitem__, keys)], group["lr"]
            same = len(snapshot) == len(k.snapshot) and all(
                map(operator.is_, snapshot, k.snapshot)) and not k.tensors
            only_lr = False
            if not same:
                k.snapshot, k.lr, k.kw = snapshot, lr, self._kwargs(group)
                # a tensor may change in place (a scheduler's `fill_`): read them every step
                k.tensors = _holds_tensor([*snapshot, lr])
            elif lr is not k.lr:  # a scheduler's η, as a rule every step: only η changes
                k.lr, k.kw, only_lr = lr, {**k.kw, "lr": value(lr)}, True
            if k.call is not None and not k.call.tensors and not self._counts:
                if not same and not k.call.holds([], k.kw):  # it would need state now
                    return False
                ready.append((k, group, grads, [], only_lr))
                continue
            state = self.state
            if k.states is not None and isinstance(state, _StateMap) \
                    and state.version == k.version:
                states = k.states  # every parameter still maps to the same dict
                if not all(states):  # one emptied in place: the full step fills it again
                    return False
            else:
                states = self._states(params) if self._needs_state(group) else []
                k.states = states
                k.version = state.version if isinstance(state, _StateMap) else -1
            lists = self._lists(group, params, states)
            if k.call is None:
                k.call = k.prepare(self.spec.kernel, params, lists, k.kw, k.layout)
                if k.call is None:
                    return False
            elif not k.call.holds(lists, k.kw):
                return False
            ready.append((k, group, grads, states, only_lr))
        for k, group, grads, states, only_lr in ready:
            steps = self._advance(group, states) if self._counts else None
            k.call.run(grads, steps if self._takes_steps else None, k.kw, only_lr)
        return True

    def _collect(self, group: dict[str, Any]
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor], bool]:
        """The group's parameters that have a gradient, their gradients, and whether one of
        them is sparse (only for classes with `_sparse`: their reference path takes them)."""
        params: list[torch.Tensor] = list(group["params"])
        grads = [p.grad for p in params]
        if all(g is not None and not g.is_sparse for g in grads):
            return params, cast(list[torch.Tensor], grads), False
        with_grad = [(p, g) for p, g in zip(params, grads) if g is not None]
        for p, g in with_grad:
            if g.is_sparse and not self._sparse:
                raise TypeError(f"{type(self).__name__} does not support sparse gradients "
                                f"(parameter of shape {tuple(p.shape)}); allowed: dense")
        return ([p for p, _ in with_grad], [g for _, g in with_grad],
                any(g.is_sparse for _, g in with_grad))

    def _sparse_impl(self, group: dict[str, Any]) -> tuple[str, None]:
        """Sparse gradients run the reference path (torch's ops take them), as in torch."""
        for option in ("foreach", "fused"):
            if group[option]:
                raise RuntimeError(f"{type(self).__name__}({option}=True) cannot take sparse "
                                   "gradients; allowed: the default or foreach=False")
        return "reference", None

    def _needs_state(self, group: dict[str, Any]) -> bool:
        """Whether this group's update reads or writes state (plain SGD does not)."""
        return True

    def _states(self, params: list[torch.Tensor]) -> list[dict[str, Any]]:
        states = [*map(self.state.__getitem__, params)]
        if not all(states):
            for p, st in zip(params, states):
                if not st:
                    st.update(self._init_state(p))
        return states

    def _advance(self, group: dict[str, Any], states: list[dict[str, Any]]) -> list[int]:
        """t ← t + 1 in every state's `step` (a 0-d tensor, as torch keeps it); the new t's.

        The group's counts are views of one 1-d tensor, so that a step increments them
        with one op and reads them back with one: kept while every state holds the same
        tensor (loading a state_dict or assigning a `step` replaces it: then the counts are
        gathered again from the values found).
        """
        steps = [st["step"] for st in states]
        kept = self._counters.get(id(group))
        if (kept is None or kept[0] is not group or len(kept[1]) != len(steps)
                or not all(map(operator.is_, kept[1], steps))):
            if not all(isinstance(t, torch.Tensor) and t.dim() == 0 and t.is_cpu
                       and t.dtype == steps[0].dtype for t in steps):
                torch._foreach_add_(steps, 1)  # as found (e.g. on another device): as torch
                return [int(t.item()) for t in steps]
            counts = torch.stack(steps)
            steps = list(counts.unbind())
            for st, t in zip(states, steps):
                st["step"] = t
            kept = self._counters[id(group)] = (group, steps, counts, counts.numpy())
        counts_np = kept[3]  # the counts' memory, through numpy: a third of torch's add_
        np.add(counts_np, 1, out=counts_np)
        return [*map(int, counts_np.tolist())]

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _lists(self, group: dict[str, Any], params: list[torch.Tensor],
               states: list[dict[str, Any]]) -> list[list[Any]]:  # pragma: no cover
        """The update's state arguments, a list of tensors (or None) each, in its order;
        creates the state the group's options need and the states lack."""
        raise NotImplementedError

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
        """The update's keyword arguments for this group (η as `lr`, a float)."""
        raise NotImplementedError

    @functools.cached_property
    def _others(self) -> tuple[str, ...]:
        """The hyperparameters but η (a replayed step compares η on its own)."""
        return tuple(key for key in self.spec.hyperparameters if key != "lr")

    def _update(self, group: dict[str, Any], fn: Callable[..., None], views: Views,
                params: list[torch.Tensor], grads: list[torch.Tensor],
                states: list[dict[str, Any]]) -> None:
        """Call `fn`, an update with the reference's signature, on `views` of the group's
        tensors (`real_views` when the group has complex tensors)."""
        steps = self._advance(group, states) if self._counts else None  # t ← t + 1
        lists = [views(ts) for ts in self._lists(group, params, states)]
        fn(views(params), views(grads), *lists, *((steps,) if self._takes_steps else ()),
           **self._kwargs(group))

    def _function(self, impl: str, layout: Any, params: list[torch.Tensor],
                  grads: list[torch.Tensor], grad_scale: torch.Tensor | None
                  ) -> Callable[..., None]:
        """The update to run; GradScaler's `grad_scale` goes into the kernels that take it,
        else it is divided out of the gradients here (in place, as GradScaler.unscale_)."""
        in_kernel = (grad_scale is not None and impl == "fused"
                     and kernels.unscales(params[0].device.type))
        if grad_scale is not None and not in_kernel:
            torch._foreach_div_(grads, grad_scale.to(grads[0].device))
        if impl != "fused":
            return self._impls[impl]
        extra = {"grad_scale": grad_scale} if in_kernel else {}
        kernel = kernels.backend(params[0].device.type).KERNELS[self.spec.kernel]
        return functools.partial(kernel, layout=layout, **extra)

    def _grads_finite(self) -> bool:
        for gi, group in enumerate(self.param_groups):
            names = group.get("param_names")
            for i, p in enumerate(group["params"]):
                g = p.grad.coalesce().values() if p.grad is not None and p.grad.is_sparse \
                    else p.grad
                if g is None or bool(torch.isfinite(g).all()):
                    continue
                if self.nonfinite == "skip":
                    return False
                name = names[i] if names else f"parameter {i} of param group {gi}"
                raise FloatingPointError(
                    f"non-finite gradient (NaN or Inf) in {name} (shape {tuple(p.shape)}); "
                    "nonfinite='raise' was asked; use 'skip' to skip such steps or "
                    "'apply' to apply them")
        return True

    def _choose_impl(self, group: dict[str, Any], params: list[torch.Tensor],
                     grads: list[torch.Tensor]) -> tuple[str, Any]:
        """The implementation for this group, and the fused kernels' layout when fused."""
        if group["foreach"] is False and not group["fused"]:
            return "reference", None
        if group["fused"] is not False and not group["foreach"]:
            kept = self._layouts.get(id(group))
            previous = kept[1] if kept is not None and kept[0] is group else None
            found = kernels.fused_layout(self.spec.kernel, params, grads, previous)
            if not isinstance(found, str):
                return "fused", found
            if group["fused"]:
                raise RuntimeError(f"{type(self).__name__}(fused=True) cannot run here: {found}")
        return "foreach", None


# torch.optim's global step hooks (`register_optimizer_step_pre_hook`, ...); None where
# this torch keeps them elsewhere: then every step goes through torch's wrapper
_GLOBAL_HOOKS = tuple(getattr(torch_optimizer, name, None) for name in (
    "_global_optimizer_pre_hooks", "_global_optimizer_post_hooks"))
if None in _GLOBAL_HOOKS:
    _GLOBAL_HOOKS = None  # type: ignore[assignment]
# torch's wrapper (hooks, profiler label "Optimizer.step#<class>.step") around our step
_hooked_step = torch.optim.Optimizer.profile_hook_step(BaseOptimizer._step)


@torch._disable_dynamo  # torch.optim's own way: torch._dynamo is imported on the first call
def _outside_graph(optimizer: BaseOptimizer, closure: Callable[[], Any] | None) -> Any:
    """`optimizer.step(closure)` where torch.compile traced a call to it: dynamo ends the
    graph before this call, runs it as eager code (where `is_compiling()` is False) and
    starts a new graph after it."""
    return optimizer.step(closure)


def _holds_tensor(values: Iterable[Any]) -> bool:
    return any(isinstance(x, torch.Tensor) or (isinstance(x, tuple) and _holds_tensor(x))
               for x in values)


def _lay_out_as(param: torch.Tensor, state: dict[str, Any]) -> None:
    """A loaded state's tensors of the parameter's shape, laid out in memory as the
    parameter (as `_init_state` makes them): a state saved from channels_last parameters
    and loaded into contiguous ones (or the reverse) would otherwise keep the layout it was
    saved in, which the fused kernels, walking parameter and state in one order, refuse."""
    if type(param) not in PLAIN:  # a subclass (FSDP2's DTensor) lays itself out
        return
    strides = torch.empty_like(param, device="meta").stride()
    for key, x in state.items():
        if (type(x) in PLAIN and x.layout == torch.strided and x.shape == param.shape
                and x.stride() != strides):
            state[key] = torch.empty_like(param, dtype=x.dtype, device=x.device).copy_(x)


def real_views(tensors: Sequence[torch.Tensor | None]) -> list[Any]:
    """Complex tensors as real (..., 2) views: the update treats re and im as two reals."""
    return [torch.view_as_real(t) if t is not None and t.is_complex() else t for t in tensors]


def _unchanged(tensors: Sequence[torch.Tensor | None]) -> list[Any]:
    return list(tensors)
