"""Losses and gradients of K stacked model copies, each on its own minibatch.

The vectorized sweep's forward and backward. A gradient function maps
(params, x, y, out) to the K minibatch losses and writes member k's gradient into row k
of `out` ([K, P], parameters in `named_parameters` order):

- params: name -> [K, *shape] stacked parameters (views of one [K, P] tensor);
- x: [K, B, *input_shape]; y: [K, B] class labels. The loss is the mean cross-entropy.

For the models the lab builds with linear layers (`LogReg`, `MLP`) the backward pass is
written out by hand as batched matmuls (`torch.baddbmm`/`bmm`), with logits kept as
[K, classes, B] so that the softmax runs over a middle dimension (torch's CPU softmax over
a last dimension of 10 is ~15x slower). Every line is the one autograd would run
(`addmm` for a linear layer, `threshold_backward` for ReLU, softmax − onehot for
log-softmax + NLL), so results equal autograd's up to rounding (tested in float64).
Any other model falls back to `vmap(grad_and_value(functional_call))`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from optimlab.models import MLP, LogReg

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


def _relu_backward(grad: torch.Tensor, relu_out: torch.Tensor) -> torch.Tensor:
    """grad where relu's output > 0, else 0: autograd's own ReLU backward."""
    return torch.ops.aten.threshold_backward(grad, relu_out, 0)


def _cross_entropy_t(logits_t: torch.Tensor, y: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy [K], its gradient w.r.t. logits) for logits [K, classes, B]."""
    target = y.unsqueeze(1)                                 # [K, 1, B]
    logp = torch.log_softmax(logits_t, 1)
    losses = logp.gather(1, target).mean((1, 2)).neg()
    grad = logp.exp_()                                      # softmax
    grad.scatter_add_(1, target, torch.full(target.shape, -1.0, dtype=grad.dtype,
                                            device=grad.device))  # softmax − onehot
    return losses, grad.div_(y.shape[1])                    # the mean over B


def _logreg(p: Params, x: torch.Tensor, y: torch.Tensor, out: Params) -> torch.Tensor:
    """logits = W x + b."""
    w, b = p["linear.weight"], p["linear.bias"]
    x = x.flatten(2)
    losses, dz = _cross_entropy_t(torch.baddbmm(b.unsqueeze(2), w, x.transpose(1, 2)), y)
    torch.bmm(dz, x, out=out["linear.weight"])
    torch.sum(dz, 2, out=out["linear.bias"])
    return losses


def _mlp(p: Params, x: torch.Tensor, y: torch.Tensor, out: Params) -> torch.Tensor:
    """h₁ = relu(W₁x + b₁), h₂ = h₁ + relu(W₂h₁ + b₂), logits = W₃h₂ + b₃ (rows of [K, B, ·])."""
    w1, w2, w3 = p["linear1.weight"], p["linear2.weight"], p["linear3.weight"]
    x = x.flatten(2)
    h1 = torch.baddbmm(p["linear1.bias"].unsqueeze(1), x, w1.transpose(1, 2)).clamp_min_(0)
    r2 = torch.baddbmm(p["linear2.bias"].unsqueeze(1), h1, w2.transpose(1, 2)).clamp_min_(0)
    h2 = h1 + r2
    logits_t = torch.baddbmm(p["linear3.bias"].unsqueeze(2), w3, h2.transpose(1, 2))
    losses, dz3 = _cross_entropy_t(logits_t, y)             # [K, classes, B]
    torch.bmm(dz3, h2, out=out["linear3.weight"])
    torch.sum(dz3, 2, out=out["linear3.bias"])
    dh2 = torch.bmm(dz3.transpose(1, 2), w3)                # [K, B, H]
    dz2 = _relu_backward(dh2, r2)
    torch.bmm(dz2.transpose(1, 2), h1, out=out["linear2.weight"])
    torch.sum(dz2, 1, out=out["linear2.bias"])
    dz1 = _relu_backward(torch.baddbmm(dh2, dz2, w2), h1)  # dh₁ = dh₂ + dz₂ W₂
    torch.bmm(dz1.transpose(1, 2), x, out=out["linear1.weight"])
    torch.sum(dz1, 1, out=out["linear1.bias"])
    return losses


def _vmap(module: nn.Module) -> GradFn:
    def loss(params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(module, params, (x,)), y)
    fn = vmap(grad_and_value(loss))

    def run(params: Params, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor
            ) -> torch.Tensor:
        per_tensor, losses = fn(params, x, y)
        torch.cat([g.reshape(len(out), -1) for g in per_tensor.values()], 1, out=out)
        return losses
    return run


_WRITTEN_OUT = {LogReg: _logreg, MLP: _mlp}


def member_grads(module: nn.Module, hand_written: bool = True) -> GradFn:
    """The gradient function for K stacked copies of `module` (see the module docstring);
    `hand_written=False` forces the generic vmap path."""
    manual = _WRITTEN_OUT.get(type(module)) if hand_written else None
    if manual is None:
        return _vmap(module)
    shapes = [(n, p.shape) for n, p in module.named_parameters()]

    def run(params: Params, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor
            ) -> torch.Tensor:
        return manual(params, x, y, views(out, shapes))
    return run
