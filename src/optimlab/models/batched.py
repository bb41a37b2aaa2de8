"""The hand-written batched backward of the lab's built-in models (`LogReg`, `MLP`, the CNN).

K stacked copies of a model, each on its own minibatch: a function here maps
(params, x, y, out, workspace) to the K mean cross-entropy losses and writes member k's
gradient into `out[name][k]`:

- params, out: name -> [K, *shape] (views of one [K, P] tensor, `named_parameters` order);
- x: [K, B, *input_shape]; y: [K, B] class labels.

The backward pass is written out as batched matmuls (`torch.baddbmm`/`bmm`), with logits
kept as [K, classes, B] so that the softmax runs over a middle dimension (torch's CPU
softmax over a last dimension of 10 is much slower: docs/performance.md, 'Behind the
code'). Every line is the one autograd would run (`addmm` for a linear layer,
`threshold_backward` for ReLU, softmax − onehot for log-softmax + NLL), so results equal
autograd's up to rounding (tested in float64). The CNN's convolutions are products too:
im2col windows times the weights (`cnn_grads`). `HAND_WRITTEN` maps a model class to its
function; other models have none (the lab then uses `vmap`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from optimlab.models.cnn import LAYERS, ConvNet
from optimlab.models.mlp import MLP, LogReg

Params = dict[str, torch.Tensor]


class Workspace:
    """Intermediate tensors kept from one step to the next, by name.

    A fresh [32, 100, 100] float32 tensor (1.3 MB) comes from mmap and page-faults on its
    first write, which makes an elementwise pass several times slower (docs/performance.md,
    'Behind the code'). Reusing buffers keeps the forward and backward at their
    memory-bound cost.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype:
            buf = self.buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf

    def zeros(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A buffer zeroed when it is made: the parts never written stay 0 (the entries of
        a convolution's windows that fall in its padding)."""
        buf = self.buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype:
            buf = self.buffers[name] = torch.zeros(shape, dtype=like.dtype, device=like.device)
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


# The CNN, channel-last: activations are [K, B, *spatial, C], so that a convolution's
# im2col window at one output position is [*kernel, C] and the convolution is one product
# per member of the windows, with a column of ones, and the weights reordered to
# [C_out, *kernel, C_in] with the bias as their last column (a few kB, once per step). The
# same column gives the bias's gradient within the weights' product. The windows are
# filled tap by tap from the unpadded input (the padding stays 0), the previous layer's
# ReLU applied on the way; the input gradient is the transposed product summed back the
# same way (col2im).


class _Conv:
    """One convolution as its backward needs it: geometry, windows, weights, shapes."""

    def __init__(self, layer: tuple[int, int, int], cols: torch.Tensor, wb: torch.Tensor,
                 in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        self.kernel, self.stride, self.padding = layer
        self.cols, self.wb, self.in_shape, self.out_shape = cols, wb, in_shape, out_shape
        self.z: torch.Tensor        # its output, before ReLU (after, for the last): the mask


def _taps(conv: _Conv) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...],
                                         tuple[slice | int, ...]]]:
    """For each tap of the kernel, in lexicographic order: (the tap, the slice of the
    unpadded input [K, B, *spatial, C] it reads, the slice of the windows [K, B, *out,
    *kernel, C] that hold it: output positions whose tap falls inside the input)."""
    spatial, out = conv.in_shape[2:-1], conv.out_shape[2:-1]
    for tap in itertools.product(range(conv.kernel), repeat=len(out)):
        at: list[slice] = [slice(None)] * 2
        held: list[slice | int] = [slice(None)] * 2
        for j, n, size in zip(tap, out, spatial, strict=True):
            first = max(0, -((j - conv.padding) // conv.stride))   # first l inside
            last = min(n, (size - 1 + conv.padding - j) // conv.stride + 1)
            start = j + conv.stride * first - conv.padding
            at.append(slice(start, start + conv.stride * (last - first - 1) + 1, conv.stride))
            held.append(slice(first, last))
        if all(s.stop > s.start for s in at[2:]):              # reads something
            yield tap, tuple(at), tuple(held + list(tap))


def _channels_last(w: torch.Tensor, name: str, ws: Workspace, extra: int = 0
                   ) -> torch.Tensor:
    """Weights [K, out, C, *kernel] as [K, out, kernel·…·C + extra] (the windows' order),
    the `extra` last columns left to the caller."""
    moved = w.movedim(2, -1)
    buf = ws(name, (len(w), w.shape[1], moved[0, 0].numel() + extra), w)
    buf[..., :buf.shape[2] - extra].view(moved.shape).copy_(moved)
    return buf


def _to_param_order(g: torch.Tensor, out: torch.Tensor) -> None:
    """Write a channel-last weight gradient [K, out, kernel·…·C] into `out` [K, out, C, …]."""
    out.copy_(g.view(*out.shape[:2], *out.shape[3:], out.shape[2]).movedim(-1, 2))


def _cnn_forward(p: Params, x: torch.Tensor, ws: Workspace
                 ) -> tuple[torch.Tensor, list[_Conv], torch.Tensor, torch.Tensor]:
    """(logitsᵀ [K, classes, B], the convolutions, the head's input [K, B, F] and its
    weights [K, classes, F] in channel-last order) for x [K, B, *input_shape]."""
    w0 = p["convs.0.weight"]
    k, d = len(w0), w0.dim() - 3
    h = x.reshape(*x.shape[:2], w0.shape[2], *x.shape[x.dim() - d:]).movedim(2, -1)
    convs: list[_Conv] = []
    for i, layer in enumerate(LAYERS):
        kernel, stride, padding = layer
        out = [(n + 2 * padding - kernel) // stride + 1 for n in h.shape[2:2 + d]]
        cols = ws.zeros(f"cols{i}", (k, h.shape[1] * math.prod(out),
                                     kernel ** d * h.shape[-1] + 1), x)
        cols[..., -1] = 1
        wb = _channels_last(p[f"convs.{i}.weight"], f"wb{i}", ws, extra=1)
        wb[..., -1].copy_(p[f"convs.{i}.bias"])
        conv = _Conv(layer, cols, wb, tuple(h.shape), (k, h.shape[1], *out, wb.shape[1]))
        windows = cols[..., :-1].view(*conv.out_shape[:-1], *(kernel,) * d, h.shape[-1])
        for _, at, held in _taps(conv):
            if i == 0:
                windows[held].copy_(h[at])
            else:                                           # the previous layer's ReLU
                torch.clamp_min(h[at], 0, out=windows[held])
        h = torch.bmm(cols, wb.transpose(1, 2), out=ws(f"z{i}", (k, cols.shape[1],
                                                                 wb.shape[1]), x))
        conv.z = h = h.view(conv.out_shape)
        convs.append(conv)
    head = h.clamp_min_(0).view(*h.shape[:2], -1)           # [K, B, *out·C]
    wl = p["linear.weight"]
    wl = _channels_last(wl.view(*wl.shape[:2], h.shape[-1], *h.shape[2:2 + d]), "wl", ws)
    logits_t = torch.baddbmm(p["linear.bias"].unsqueeze(2), wl, head.transpose(1, 2),
                             out=ws("zl", (k, wl.shape[1], head.shape[1]), x))
    return logits_t, convs, head, wl


def _weight_grad(dz: torch.Tensor, cols: torch.Tensor, name: str, ws: Workspace
                 ) -> torch.Tensor:
    """dzᵀ · cols: [K, out, kernel·…·C + 1], the weights' gradient and the bias's. Computed
    in the orientation whose rows are the longer: faster for the first layer's 6 × 25
    (docs/performance.md, 'Behind the code')."""
    k, _, c_out = dz.shape
    if cols.shape[2] >= c_out:
        return torch.bmm(dz.transpose(1, 2), cols, out=ws(name, (k, c_out, cols.shape[2]), dz))
    return torch.bmm(cols.transpose(1, 2), dz, out=ws(name, (k, cols.shape[2], c_out), dz)
                     ).transpose(1, 2)


def _col2im(dcols: torch.Tensor, conv: _Conv, name: str, ws: Workspace) -> torch.Tensor:
    """The gradient w.r.t. a convolution's unpadded input [K, B, *spatial, C] from that of
    its windows, dcols [K, B, *out, *kernel, C]: each tap's slice summed where it was read.
    The taps below the stride read disjoint positions that cover all below stride·out, so
    they are copied (first: the taps come in lexicographic order) and the rest added
    (LAYERS have kernel ≥ stride)."""
    grad = ws(name, conv.in_shape, dcols)
    for axis, n in enumerate(conv.out_shape[2:-1], start=2):   # what no copied tap reaches
        reached = min(max(conv.stride * n - conv.padding, 0), grad.shape[axis])
        grad.narrow(axis, reached, grad.shape[axis] - reached).zero_()
    for tap, at, held in _taps(conv):
        if max(tap) < conv.stride:
            grad[at].copy_(dcols[held])
        else:
            grad[at] += dcols[held]
    return grad


def cnn_grads(p: Params, x: torch.Tensor, y: torch.Tensor, out: Params, ws: Workspace
              ) -> torch.Tensor:
    """Three stride-2 convolutions with ReLU and a linear head (`ConvNet`), each
    convolution as im2col windows · weights; the backward is the same products transposed."""
    logits_t, convs, head, wl = _cnn_forward(p, x, ws)
    losses, dz = _cross_entropy_t(logits_t, y)              # [K, classes, B]
    last = convs[-1].out_shape
    _to_param_order(torch.bmm(dz, head, out=ws("dwl", tuple(wl.shape), x)),
                    out["linear.weight"].view(*wl.shape[:2], last[-1], *last[2:-1]))
    torch.sum(dz, 2, out=out["linear.bias"])
    dh = torch.bmm(dz.transpose(1, 2), wl, out=ws("dhead", tuple(head.shape), x)).view(last)
    for i in range(len(convs) - 1, -1, -1):
        conv = convs[i]
        dz = _relu_backward(dh, conv.z, dh)                 # in place
        dz = dz.view(len(dz), -1, dz.shape[-1])             # [K, M, C_out]
        dwb = _weight_grad(dz, conv.cols, f"dwb{i}", ws)
        _to_param_order(dwb[..., :-1], out[f"convs.{i}.weight"])
        out[f"convs.{i}.bias"].copy_(dwb[..., -1])
        if i > 0:
            dcols = torch.bmm(dz, conv.wb[..., :-1], out=ws(f"dcols{i}", (
                *dz.shape[:2], conv.wb.shape[2] - 1), x))
            dh = _col2im(dcols.view(*conv.out_shape[:-1], *(conv.kernel,) * (len(last) - 3),
                                    -1), conv, f"dh{i - 1}", ws)
    return losses


BatchedGrads = Callable[[Params, torch.Tensor, torch.Tensor, Params, Workspace], torch.Tensor]
# model class -> its hand-written batched loss and backward
HAND_WRITTEN: dict[type[nn.Module], BatchedGrads] = {LogReg: logreg_grads, MLP: mlp_grads,
                                                      ConvNet: cnn_grads}
BatchedLogits = Callable[[Params, torch.Tensor, Workspace], torch.Tensor]
# model class -> the K members' logits on one shared input (batched evaluation). Not the
# CNN's: one forward per member (torch's convolutions, 512 rows) is faster than its
# written-out forward for all members (docs/performance.md, 'Behind the code').
HAND_WRITTEN_LOGITS: dict[type[nn.Module], BatchedLogits] = {LogReg: logreg_logits_t,
                                                             MLP: mlp_logits_t}
