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


class Workspace:
    """Intermediate tensors kept from one step to the next, by name.

    A fresh [32, 100, 100] float32 tensor (1.3 MB) comes from mmap and page-faults on its
    first write: 0.5-0.9 ms per elementwise pass instead of 0.15 ms. Reusing buffers keeps
    the forward and backward at their memory-bound cost.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype:
            buf = self.buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf


def _relu_backward(grad: torch.Tensor, relu_out: torch.Tensor, out: torch.Tensor
                   ) -> torch.Tensor:
    """grad where relu's output > 0, else 0: autograd's own ReLU backward."""
    return torch.ops.aten.threshold_backward.grad_input(grad, relu_out, 0, grad_input=out)


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


def _logreg(p: Params, x: torch.Tensor, y: torch.Tensor, out: Params, ws: Workspace
            ) -> torch.Tensor:
    """logits = W x + b."""
    w, b = p["linear.weight"], p["linear.bias"]
    x = x.flatten(2)
    logits_t = torch.baddbmm(b.unsqueeze(2), w, x.transpose(1, 2),
                             out=ws("z", (len(w), w.shape[1], x.shape[1]), x))
    losses, dz = _cross_entropy_t(logits_t, y)
    torch.bmm(dz, x, out=out["linear.weight"])
    torch.sum(dz, 2, out=out["linear.bias"])
    return losses


def _mlp(p: Params, x: torch.Tensor, y: torch.Tensor, out: Params, ws: Workspace
         ) -> torch.Tensor:
    """h₁ = relu(W₁x + b₁), h₂ = h₁ + relu(W₂h₁ + b₂), logits = W₃h₂ + b₃ (rows of [K, B, ·])."""
    w1, w2, w3 = p["linear1.weight"], p["linear2.weight"], p["linear3.weight"]
    x = x.flatten(2)
    hidden = (len(w1), x.shape[1], w1.shape[1])             # [K, B, H]
    h1 = torch.baddbmm(p["linear1.bias"].unsqueeze(1), x, w1.transpose(1, 2),
                       out=ws("h1", hidden, x)).clamp_min_(0)
    r2 = torch.baddbmm(p["linear2.bias"].unsqueeze(1), h1, w2.transpose(1, 2),
                       out=ws("r2", hidden, x)).clamp_min_(0)
    h2 = torch.add(h1, r2, out=ws("h2", hidden, x))
    logits_t = torch.baddbmm(p["linear3.bias"].unsqueeze(2), w3, h2.transpose(1, 2),
                             out=ws("z3", (len(w3), w3.shape[1], x.shape[1]), x))
    losses, dz3 = _cross_entropy_t(logits_t, y)             # [K, classes, B]
    torch.bmm(dz3, h2, out=out["linear3.weight"])
    torch.sum(dz3, 2, out=out["linear3.bias"])
    dh = torch.bmm(dz3.transpose(1, 2), w3, out=ws("dh", hidden, x))  # dh₂
    dz = _relu_backward(dh, r2, ws("dz", hidden, x))        # dz₂
    torch.bmm(dz.transpose(1, 2), h1, out=out["linear2.weight"])
    torch.sum(dz, 1, out=out["linear2.bias"])
    dh.baddbmm_(dz, w2)                                     # dh₁ = dh₂ + dz₂ W₂
    dz = _relu_backward(dh, h1, dz)                         # dz₁
    torch.bmm(dz.transpose(1, 2), x, out=out["linear1.weight"])
    torch.sum(dz, 1, out=out["linear1.bias"])
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
    ws = Workspace()

    def run(params: Params, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor
            ) -> torch.Tensor:
        return manual(params, x, y, views(out, shapes), ws)
    return run
