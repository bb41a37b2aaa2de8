"""Batched updates: K configurations of one optimizer stepped at once.

Parameters are stacked over K model copies (every tensor has a leading dim K) and each
hyperparameter a member may vary has one value per member. The update is the optimizer's
element (its `Formula`) on the stacked tensors, each scalar worked out per member from its
own arguments, as its single run's are, then broadcast over the stacked dims: a member's
trajectory equals its single run's up to rounding (float64 ≤ 1e-9 in the tests). A sweep
that keeps all K members' parameters in one flat [K, P] tensor does each line as one
large tensor op.

On CPU `BatchedOptimizer` steps with the formula's fused kernel instead, where it runs
(`optimlab.kernels.batched`): one pass over memory for every line, each member reading its
own row of scalars. The element on stacked tensors stays the path everywhere else, and
both keep the same state. An optimizer whose update is no element (Muon) brings its own
batched step (`Batched.update`), given every member's options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from optimlab import kernels
from optimlab.optim._formula import (
    _per_member,
    batched_states,
    batched_update,
    member_flags,
    member_scalars,
)

if TYPE_CHECKING:
    from optimlab.optim._spec import OptimizerSpec

Tensors = list[torch.Tensor]


def _spec(name: str) -> OptimizerSpec:
    from optimlab.optim import SPECS  # the registry imports the optimizers, which import us

    if name not in SPECS:
        raise ValueError(f"Invalid optimizer: {name!r}; allowed: {', '.join(SPECS)}")
    spec = SPECS[name]
    if spec.batched is None or (spec.formula is None and spec.batched.update is None):
        raise ValueError(f"Invalid optimizer: {name!r} has no batched update; use executor "
                         "'sequential'")
    return spec


def segment(name: str, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Members with equal segments can share one `BatchedOptimizer`: the same optimizer and
    the same values of the options its batched update needs shared (`Batched.shared`)."""
    from optimlab.optim import SPECS

    batched = SPECS[name].batched if name in SPECS else None
    shared = batched.shared if batched is not None else ()
    return (name, *(repr(kwargs.get(k, SPECS[name].defaults[k])) for k in shared))


def check_members(name: str, members: Sequence[dict[str, Any]]) -> None:
    """ValueError unless K members of optimizer `name` can step as one batch. Each member's
    kwargs are checked by the optimizer class itself, so the messages are the single runs'
    ones; options the batched update cannot vary are refused, and the `shared` ones must
    be one value for every member."""
    spec = _spec(name)
    batched = spec.batched
    assert batched is not None
    full = []
    for kw in members:
        spec.check(kw)  # an unknown keyword: the one-line message, not the class's TypeError
        spec.cls([torch.zeros(1)], **kw)  # the class's own validation
        for key, val in kw.items():
            if key not in (*batched.per_member, *batched.shared) and val != spec.defaults[key]:
                raise ValueError(f"Invalid {key}={val!r} for the batched {name}: it varies "
                                 f"only {', '.join(batched.per_member)}; use executor "
                                 "'sequential'")
        full.append({**spec.defaults, **kw})
    for key in batched.shared:
        if any(kw[key] != full[0][key] for kw in full):
            raise ValueError(f"Invalid {key}: {sorted({kw[key] for kw in full})} in one batch "
                             f"of {name}; allowed: one value shared by every member")


def kernel_kwargs(spec: OptimizerSpec, kw: dict[str, Any]) -> dict[str, Any]:
    """A member's keyword arguments as its optimizer's update functions (and fused kernel)
    take them: what the optimizer class itself passes them."""
    opt = spec.cls([torch.zeros(1)], **kw)
    return opt._kwargs(opt.param_groups[0])  # type: ignore[attr-defined, no-any-return]


class BatchedOptimizer:
    """K members of optimizer `name` over stacked parameters (leading dim K), in lockstep.

    `members[k]` holds member k's keyword arguments, as for the optimizer class. The
    caller owns `params` (updated in place by `step`); `select` keeps a subset of members
    (e.g. drops diverged ones) together with their state and hyperparameters.

    `fused`: None (the default) steps with the fused batched kernel where it runs (CPU,
    float32 or float64, contiguous stacked tensors and gradients, numba loaded) and with
    the torch ops of the specification's batched update elsewhere; True insists on the
    kernel (RuntimeError saying why it cannot run); False always runs the torch ops.
    `last_impl` says which path the last step took: "fused" or "batched".
    """

    def __init__(self, name: str, params: Tensors, members: Sequence[dict[str, Any]], *,
                 fused: bool | None = None):
        for i, p in enumerate(params):
            if p.dim() == 0 or p.shape[0] != len(members):
                raise ValueError(f"Invalid params: tensor {i} has shape {tuple(p.shape)}; "
                                 f"allowed: a leading dim of K = {len(members)} (the members)")
        self.name, self.params, self.members = name, list(params), list(members)
        check_members(name, members)
        self.spec = _spec(name)
        # what the fused kernel takes, built here: a caller that keeps torch._dynamo from
        # being imported by the optimizers it builds (`dynamo_not_imported`) wraps this
        self.formula = self.spec.formula
        if self.formula is None:  # its own batched update takes every member's options
            self.kernel_kwargs = [{**self.spec.defaults, **kw} for kw in members]
        else:
            self.kernel_kwargs = [kernel_kwargs(self.spec, kw) for kw in members]
        self.flags = member_flags(self.formula, self.kernel_kwargs) if self.formula else {}
        self.scalars = member_scalars(self.formula, self.kernel_kwargs) if self.formula else {}
        self.fused = fused
        self.kernel: Any = None  # the backend's batched step (or why none), made on first use
        self.own_step: Any = None  # a formula-less optimizer's (`Batched.update`), likewise
        self.last_impl: str | None = None
        self.t = 0  # steps taken; Adam's bias correction uses t from 1
        self.state: dict[str, list[Any]] = {}  # filled by the update on its first step
        self.training = True  # the mode of a formula with `modes` (see `eval`)

    def step(self, grads: Tensors) -> None:
        """One update of every member with its own gradient slice `grads[i][k]`."""
        self.t += 1
        if self.fused is not False:
            reason = self._fused_step(grads)
            if reason is None:
                self.last_impl = "fused"
                return
            if self.fused:
                raise RuntimeError(f"Invalid fused=True for the batched {self.name}: {reason}")
        if self.formula is None:
            if self.own_step is None:
                assert self.spec.batched is not None and self.spec.batched.update is not None
                self.own_step = self.spec.batched.update(self.params, self.kernel_kwargs)
            self.own_step(self.params, grads, self.state, self.t)
        else:
            batched_update(self.formula, self.params, grads, self._lists(), self.t,
                           self.kernel_kwargs, self.flags, self.scalars)
        self.last_impl = "batched"

    def eval(self) -> None:
        """Every member's parameters to the point it is evaluated at, for a formula with
        `modes` (Schedule-Free's x), as the optimizer class's `eval()`; else nothing."""
        self._move(train=False)

    def train(self) -> None:
        """Back to the point the gradients are taken at (the class's `train()`)."""
        self._move(train=True)

    def _move(self, train: bool) -> None:
        modes = self.formula.modes if self.formula is not None else None
        if modes is None or self.training == train:
            return
        self.training = train
        states = self.state.get(modes.state)
        if states is None:  # before the first step both points are the start
            return
        c = torch.tensor([float((modes.to_train if train else modes.to_eval)(kw))
                          for kw in self.kernel_kwargs], dtype=torch.float64)
        with torch.no_grad():
            for p, z in zip(self.params, states, strict=True):
                p.copy_(modes.move(p, z, c=_per_member(c, p)))

    def _lists(self) -> list[list[Any]]:
        """The stacked state lists in the formula's order (made on the first step)."""
        assert self.formula is not None  # only a formula's paths keep stacked lists
        return batched_states(self.formula, self.params, self.state, self.flags,
                              {**self.spec.defaults, **self.members[0]})

    def _fused_step(self, grads: Tensors) -> str | None:
        """The step through the fused kernel, or why it cannot run (then nothing changed)."""
        if not self.params:
            return "no parameters"
        if self.kernel is None:
            self.kernel = kernels.batched(self.spec.kernel, self.params[0].device.type,
                                          self.kernel_kwargs)
        if isinstance(self.kernel, str):
            return self.kernel
        reason: str | None = self.kernel.unavailable(self.params, grads)
        if reason is None:
            self.kernel.run(self.params, grads, self._lists(), self.t)
        return reason

    def select(self, index: torch.Tensor, params: Tensors) -> None:
        """Keep members `index` (int64, into the current K); `params` are the caller's
        parameters already reduced to those members."""
        self.params = list(params)
        rows = index.tolist()
        self.members = [self.members[i] for i in rows]
        self.kernel_kwargs = [self.kernel_kwargs[i] for i in rows]
        self.kernel = self.own_step = None
        self.scalars = {k: v[index] for k, v in self.scalars.items()}
        self.state = {k: [None if x is None else x[index] for x in xs]
                      for k, xs in self.state.items()}
