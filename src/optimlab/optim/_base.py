"""Bookkeeping shared by the optimizers: validation, lazy state, dispatch.

The math lives in pure update functions next to each optimizer; this class
only groups parameters, creates state, checks input and picks an
implementation ("reference", "foreach" or "fused") for every param group.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.optim.optimizer as torch_optimizer

from optimlab import kernels
from optimlab._dynamo import profiler_check
from optimlab.kernels._checks import PLAIN
from optimlab.kernels.formula import Formula
from optimlab.optim._replay import Kept, StateMap, replay
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


class BaseOptimizer(torch.optim.Optimizer):
    """torch.optim.Optimizer with lazy state and a per-group implementation choice.

    Subclasses define `_init_state(p)` and `_kwargs(group)` (the update's keyword
    arguments; its state lists, `_lists`, follow from the formula), `_impls`, their
    "reference" and "foreach" updates (derived from their formula, `optim._formula`), and
    optionally `_validate(group)`; `spec` (bound by `register`) gives their
    hyperparameters' ranges and their formula, whose name is their fused kernel's.
    """

    _impls: ClassVar[dict[str, Callable[..., None]]] = {}
    _sparse: ClassVar[bool] = False  # whether the reference update takes sparse gradients
    _counts: ClassVar[bool] = False  # whether each state counts its steps t (`_advance`)
    _takes_steps: ClassVar[bool] = False  # whether the update takes the t's, after the lists
    # whether a step may replay the last one (`optimlab.optim._replay`); off, the benchmark
    # measures what the replay is worth (`optimlab.bench.replay`)
    _replays: ClassVar[bool] = True
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
        # what the last full step settled per group for `replay` (`optimlab.optim._replay`),
        # or None: it did not take the fused path with every parameter in every group
        self._kept: list[Kept] | None = None
        # the last update arguments `_lists` read the formula's flags of, and those flags
        self._flags_seen: tuple[Any, dict[str, bool]] = (None, {})
        self._plan = _plan(self.spec.formula)
        super().__init__(params, defaults)
        self.state = StateMap(dict, self.state)
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
        self._flags_seen = (None, {})
        self._plan = _plan(self.spec.formula)
        if type(self.state) is not StateMap:
            self.state = StateMap(dict, self.state)
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
        (`optimlab.optim._compiled`): dynamo cannot trace numba's kernels, and would guard
        on every hyperparameter (a scheduler's new η each step would recompile).
        """
        # True only while dynamo traces this call. Named through the module `torch`: dynamo
        # traces a frame that names a torch module, and skips one with no tensor in sight
        # (our step), tracing the frames that it calls instead
        if torch.compiler.is_compiling():
            from optimlab.optim._compiled import eager_step

            return eager_step(self, closure)
        if (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                or any(_GLOBAL_HOOKS) or _profiler_enabled()):
            return _hooked_step(self, *(() if closure is None else (closure,)))
        return self._step(closure)

    step.hooked = True  # type: ignore[attr-defined]  # torch.optim: do not wrap it again

    def _step(self, closure: Callable[[], Any] | None = None) -> Any:
        """`step` itself, without grad; a replay of the last step makes no autograd op, so
        it runs as it is."""
        if closure is None and self._kept is not None and replay(self, self._kept):
            return None
        enabled = torch.is_grad_enabled()
        torch.set_grad_enabled(False)  # as a function: lighter than a `no_grad` context
        try:
            return self._step_no_grad(closure)
        finally:
            torch.set_grad_enabled(enabled)

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
        kept: list[Kept] = []
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
            fn = self._function(impl, layout, params, grads, grad_scale, group)
            self._update(group, fn, real_views if is_complex else _unchanged, params, grads,
                         states)
            prepare = getattr(kernels.backend(params[0].device.type), "prepare", None) \
                if impl == "fused" else None
            if (prepare is not None and grad_scale is None and not is_complex
                    and len(params) == len(group["params"])):
                kept.append(Kept(group, layout, prepare, self.spec.hyperparameters))
        self._layouts = layouts  # only this step's groups: a removed group's tensors go
        self._kept = kept if self._replays and len(kept) == len(self.param_groups) else None
        return loss

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
               states: list[dict[str, Any]], kw: dict[str, Any]) -> list[list[Any]]:
        """The update's state arguments, a list of tensors (or None) each, in the formula's
        order, from the states under its `keys`; `kw` the update's keyword arguments. A
        state the flags leave out is a list of None; a lazy one stays None until the update
        makes it; one the flags use (or with an `initial`) is created where it is missing:
        a schedule may turn an option on after the first step."""
        keys, plan = self._plan
        if plan is None:  # every state always there (`_init_state`): the common case
            lists: list[list[Any]] = []
            for key in keys:
                lists.append([st[key] for st in states])
            return lists
        seen = self._flags_seen  # the replayed steps' `kw` is one dict while it holds
        if seen[0] is not kw:
            seen = self._flags_seen = (kw, self.spec.formula.flags(kw))  # type: ignore[union-attr]
        flags = seen[1]
        lists = []
        for key, flag, lazy, create, initial in plan:
            if flag is not None and not flags[flag]:
                lists.append([None] * len(params))
            elif lazy:
                lists.append([st.get(key) for st in states])
            else:
                if create:
                    _create(key, initial, group, params, states)
                lists.append([st[key] for st in states])
        return lists

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
        """The update's keyword arguments for this group (η as `lr`, a float)."""
        raise NotImplementedError

    def _update(self, group: dict[str, Any], fn: Callable[..., None], views: Views,
                params: list[torch.Tensor], grads: list[torch.Tensor],
                states: list[dict[str, Any]]) -> None:
        """Call `fn`, an update with the reference's signature, on `views` of the group's
        tensors (`real_views` when the group has complex tensors)."""
        steps = self._advance(group, states) if self._counts else None  # t ← t + 1
        kw = self._kwargs(group)
        lists = [views(ts) for ts in self._lists(group, params, states, kw)]
        fn(views(params), views(grads), *lists, *((steps,) if self._takes_steps else ()), **kw)

    def _function(self, impl: str, layout: Any, params: list[torch.Tensor],
                  grads: list[torch.Tensor], grad_scale: torch.Tensor | None,
                  group: dict[str, Any]) -> Callable[..., None]:
        """The update to run; GradScaler's `grad_scale` goes into the kernels that take it,
        else it is divided out of the gradients here (in place, as GradScaler.unscale_)."""
        in_kernel = (grad_scale is not None and impl == "fused"
                     and kernels.unscales(params[0].device.type))
        if grad_scale is not None and not in_kernel:
            torch._foreach_div_(grads, grad_scale.to(grads[0].device))
        if impl != "fused":
            return self._impls[impl]
        extra = {"grad_scale": grad_scale} if in_kernel else {}
        name = self._kernel(group)
        assert name is not None  # `_choose_impl` took the fused path
        kernel = kernels.backend(params[0].device.type).KERNELS[name]
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

    def _kernel(self, group: dict[str, Any]) -> str | None:
        """The fused kernel of this group's update (None: it has none)."""
        return self.spec.kernel

    def _choose_impl(self, group: dict[str, Any], params: list[torch.Tensor],
                     grads: list[torch.Tensor]) -> tuple[str, Any]:
        """The implementation for this group, and the fused kernels' layout when fused."""
        if group["foreach"] is False and not group["fused"]:
            return "reference", None
        if group["fused"] is not False and not group["foreach"]:
            kept = self._layouts.get(id(group))
            previous = kept[1] if kept is not None and kept[0] is group else None
            found = kernels.fused_layout(self._kernel(group), params, grads, previous)
            if not isinstance(found, str):
                return "fused", found
            if group["fused"]:
                raise RuntimeError(f"{type(self).__name__}(fused=True) cannot run here: {found}")
        return "foreach", None


def _global_step_hooks() -> tuple[dict[int, Any], ...]:
    """torch.optim's registries of the step hooks of every optimizer, as their public
    registration gives them: a hook's handle refers to the registry it was added to."""
    registries: list[dict[int, Any]] = []
    for register in (torch_optimizer.register_optimizer_step_pre_hook,
                     torch_optimizer.register_optimizer_step_post_hook):
        handle = register(lambda *args: None)
        registries.append(cast(dict[int, Any], handle.hooks_dict_ref()))
        handle.remove()
    return tuple(registries)


_GLOBAL_HOOKS = _global_step_hooks()
_profiler_enabled = profiler_check()
# torch's wrapper (hooks, profiler label "Optimizer.step#<class>.step") around our step
_hooked_step = torch.optim.Optimizer.profile_hook_step(BaseOptimizer._step)


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


# A formula's states' keys, and None when `_lists` only reads them, else per state: (key,
# the flag it needs or None, lazy, created where missing, the group's key of its initial
# value or None); worked out once
Plan = tuple[tuple[str, ...], tuple[tuple[str, str | None, bool, bool, str | None], ...] | None]


def _plan(formula: Formula | None) -> Plan:
    if formula is None:  # an optimizer with no formula brings its own `_lists`
        return (), None
    keys = tuple(formula.keys[name] for name in formula.states)
    plan = tuple((key, formula.uses.get(name), name in formula.lazy,
                  name in formula.uses or name in formula.initial, formula.initial.get(name))
                 for name, key in zip(formula.states, keys))
    return keys, plan if any(p[1] or p[2] or p[3] for p in plan) else None


def _create(key: str, initial: str | None, group: dict[str, Any], params: list[torch.Tensor],
            states: list[dict[str, Any]]) -> None:
    """The state under `key` where a state dict lacks it: zero, or the group's value of
    `initial` (a complex weight is a pair of reals, each starting there, as torch's)."""
    v = value(group[initial]) if initial is not None else 0.0
    for p, st in zip(params, states):
        if key not in st:
            st[key] = torch.full_like(p, complex(v, v) if p.is_complex() else v,
                                      memory_format=torch.preserve_format)


def real_views(tensors: Sequence[torch.Tensor | None]) -> list[Any]:
    """Complex tensors as real (..., 2) views: the update treats re and im as two reals."""
    return [torch.view_as_real(t) if t is not None and t.is_complex() else t for t in tensors]


def _unchanged(tensors: Sequence[torch.Tensor | None]) -> list[Any]:
    return list(tensors)
