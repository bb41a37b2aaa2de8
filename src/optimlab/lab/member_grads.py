"""Losses and gradients of K stacked model copies, each on its own minibatch.

The vectorized sweep's forward and backward. A gradient function maps
(params, x, y, out) to the K minibatch losses and writes member k's gradient into row k
of `out` ([K, P], parameters in `named_parameters` order):

- params: name -> [K, *shape] stacked parameters (views of one [K, P] tensor);
- x: [K, B, *input_shape]; y: [K, B] class labels (regression: [K, B, ...] targets). The
  loss is the task's (`optimlab.train.task_loss`): mean cross-entropy or squared error.

For the models with a hand-written batched backward (`optimlab.models.batched`:
`LogReg`, `MLP`, the CNN; classification) that one runs; any other model or task falls back to
`vmap(grad_and_value(functional_call))`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from optimlab.models.batched import HAND_WRITTEN, HAND_WRITTEN_LOGITS, Workspace
from optimlab.train.evaluation import task_loss

Params = dict[str, torch.Tensor]
GradFn = Callable[[Params, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def views(flat: torch.Tensor, shapes: Sequence[tuple[str, torch.Size]]) -> Params:
    """name -> [K, *shape] view of the [K, P] tensor `flat` (shapes in parameter order)."""
    out, start = {}, 0
    for name, shape in shapes:
        n = shape.numel()
        out[name] = flat[:, start:start + n].view(-1, *shape)
        start += n
    return out


def _vmap(module: nn.Module, task: str) -> GradFn:
    def loss(params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return task_loss(task, functional_call(module, params, (x,)), y)
    fn = vmap(grad_and_value(loss))

    def run(params: Params, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor
            ) -> torch.Tensor:
        per_tensor, losses = fn(params, x, y)
        torch.cat([g.reshape(len(out), -1) for g in per_tensor.values()], 1, out=out)
        return losses
    return run


def is_hand_written(module: nn.Module, task: str = "classification") -> bool:
    """Whether `member_grads` runs `module`'s written-out batched backward (no `vmap`)."""
    return task == "classification" and type(module) in HAND_WRITTEN


def member_grads(module: nn.Module, hand_written: bool = True,
                 task: str = "classification") -> GradFn:
    """The gradient function for K stacked copies of `module` (see the module docstring);
    `hand_written=False` forces the generic vmap path."""
    manual = HAND_WRITTEN[type(module)] if hand_written and is_hand_written(module, task) \
        else None
    if manual is None:
        return _vmap(module, task)
    shapes = [(n, p.shape) for n, p in module.named_parameters()]
    ws = Workspace()

    def run(params: Params, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor
            ) -> torch.Tensor:
        return manual(params, x, y, views(out, shapes), ws)
    return run


def member_logits(module: nn.Module, members: int) -> Callable[[Params, torch.Tensor],
                                                                torch.Tensor]:
    """(params, x [N, …]) -> the K members' outputs [K, outputs, N] on one shared input: the
    hand-written batched forward where the model has one, else one `functional_call` per
    member (on the CPU faster than `vmap`, which turns the CNN's convolutions into
    grouped ones)."""
    manual = HAND_WRITTEN_LOGITS.get(type(module))
    if manual is not None:
        ws = Workspace()
        return lambda params, x: manual(params, x, ws)

    def each(params: Params, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([functional_call(module, {n: p[k] for n, p in params.items()},
                                            (x,)).T for k in range(members)])
    return each
