"""The hand-written batched backward of the lab's linear models (`LogReg`, `MLP`).

K stacked copies of a model, each on its own minibatch: a function here maps
(params, x, y, out, workspace) to the K mean cross-entropy losses and writes member k's
gradient into `out[name][k]`:

- params, out: name -> [K, *shape] (views of one [K, P] tensor, `named_parameters` order);
- x: [K, B, *input_shape]; y: [K, B] class labels.

The backward pass is written out as batched matmuls (`torch.baddbmm`/`bmm`), with logits
kept as [K, classes, B] so that the softmax runs over a middle dimension (torch's CPU
softmax over a last dimension of 10 is ~15x slower). Every line is the one autograd would
run (`addmm` for a linear layer, `threshold_backward` for ReLU, softmax − onehot for
log-softmax + NLL), so results equal autograd's up to rounding (tested in float64).
`HAND_WRITTEN` maps a model class to its function; other models have none (the lab then
uses `vmap`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from optimlab.models.mlp import MLP, LogReg

Params = dict[str, torch.Tensor]


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


def logreg_grads(p: Params, x: torch.Tensor, y: torch.Tensor, out: Params, ws: Workspace
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


def mlp_grads(p: Params, x: torch.Tensor, y: torch.Tensor, out: Params, ws: Workspace
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


BatchedGrads = Callable[[Params, torch.Tensor, torch.Tensor, Params, Workspace], torch.Tensor]
# model class -> its hand-written batched loss and backward
HAND_WRITTEN: dict[type[nn.Module], BatchedGrads] = {LogReg: logreg_grads, MLP: mlp_grads}
