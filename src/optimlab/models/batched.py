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


def _linear_t(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, name: str, ws: Workspace
              ) -> torch.Tensor:
    """Wx + b for K members in feature-major form: [K, out, B] from x [K, B, in].

    One product per member (`baddbmm`), never one GEMM over the members stacked: a
    member's result then does not depend on how many members train with it (bitwise),
    so a resumed sweep equals an uninterrupted one."""
    k, out_f, _ = w.shape
    return torch.baddbmm(b.unsqueeze(2), w, x.transpose(1, 2),
                         out=ws(name, (k, out_f, x.shape[1]), x))


def _mlp_forward_t(p: Params, x: torch.Tensor, ws: Workspace
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(h₁ᵀ, relu(W₂h₁ + b₂)ᵀ, h₂ᵀ, logitsᵀ), each [K, features, B], for x [K, B, D]."""
    h1 = _linear_t(p["linear1.weight"], p["linear1.bias"], x, "h1", ws).clamp_min_(0)
    r2 = torch.baddbmm(p["linear2.bias"].unsqueeze(2), p["linear2.weight"], h1,
                       out=ws("r2", h1.shape, x)).clamp_min_(0)
    h2 = torch.add(h1, r2, out=ws("h2", h1.shape, x))
    w3 = p["linear3.weight"]
    logits_t = torch.baddbmm(p["linear3.bias"].unsqueeze(2), w3, h2,
                             out=ws("z3", (len(w3), w3.shape[1], h2.shape[2]), x))
    return h1, r2, h2, logits_t


def mlp_grads(p: Params, x: torch.Tensor, y: torch.Tensor, out: Params, ws: Workspace
              ) -> torch.Tensor:
    """h₁ = relu(W₁x + b₁), h₂ = h₁ + relu(W₂h₁ + b₂), logits = W₃h₂ + b₃, all kept
    feature-major ([K, features, B]): every product is Wh, as in the formulas, the
    softmax runs over the middle dimension and the forward is the one evaluation uses."""
    x = x.flatten(2)
    h1, r2, h2, logits_t = _mlp_forward_t(p, x, ws)
    losses, dz3 = _cross_entropy_t(logits_t, y)             # [K, classes, B]
    torch.bmm(dz3, h2.transpose(1, 2), out=out["linear3.weight"])
    torch.sum(dz3, 2, out=out["linear3.bias"])
    dh2 = torch.bmm(p["linear3.weight"].transpose(1, 2), dz3, out=ws("dh2", h1.shape, x))
    dz = _relu_backward(dh2, r2, ws("dz", h1.shape, x))     # dz₂
    torch.bmm(dz, h1.transpose(1, 2), out=out["linear2.weight"])
    torch.sum(dz, 2, out=out["linear2.bias"])
    dh1 = torch.baddbmm(dh2, p["linear2.weight"].transpose(1, 2), dz,
                        out=ws("dh1", h1.shape, x))         # dh₁ = dh₂ + W₂ᵀdz₂
    dz = _relu_backward(dh1, h1, dz)                        # dz₁
    torch.bmm(dz, x, out=out["linear1.weight"])
    torch.sum(dz, 2, out=out["linear1.bias"])
    return losses


def mlp_logits_t(p: Params, x: torch.Tensor, ws: Workspace) -> torch.Tensor:
    """The K members' logits [K, classes, N] on one shared input x [N, *input_shape]."""
    x = x.flatten(1)
    return _mlp_forward_t(p, x.expand(len(p["linear1.weight"]), *x.shape), ws)[3]


def logreg_logits_t(p: Params, x: torch.Tensor, ws: Workspace) -> torch.Tensor:
    """The K members' logits [K, classes, N] on one shared input x [N, *input_shape]."""
    x = x.flatten(1)
    w = p["linear.weight"]
    return _linear_t(w, p["linear.bias"], x.expand(len(w), *x.shape), "z", ws)


BatchedGrads = Callable[[Params, torch.Tensor, torch.Tensor, Params, Workspace], torch.Tensor]
# model class -> its hand-written batched loss and backward
HAND_WRITTEN: dict[type[nn.Module], BatchedGrads] = {LogReg: logreg_grads, MLP: mlp_grads}
BatchedLogits = Callable[[Params, torch.Tensor, Workspace], torch.Tensor]
# model class -> the K members' logits on one shared input (batched evaluation)
HAND_WRITTEN_LOGITS: dict[type[nn.Module], BatchedLogits] = {LogReg: logreg_logits_t,
                                                             MLP: mlp_logits_t}
