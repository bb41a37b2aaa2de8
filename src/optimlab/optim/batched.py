"""Batched updates: K configurations of one optimizer stepped at once.

Parameters are stacked over K model copies (every tensor has a leading dim K) and each
hyperparameter is a tensor of shape [K], one value per member, broadcast over the
stacked dims. The math is the reference functions' (``sgd_reference`` …
``adam_reference``), line by line; a member's trajectory equals the reference run with
that member's hyperparameters up to rounding (≤ 1e-12 relative in float64: fused
multiply-adds may round differently). A sweep that keeps all K members' parameters in
one flat [K, P] tensor does each line below as one large tensor op.

Options covered (those a sweep varies): lr, momentum, alpha, betas, eps,
weight_decay, and AdamW's decoupled weight decay. Others (nesterov, centered,
amsgrad, dampening, maximize) are refused by :class:`BatchedOptimizer`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from optimlab.optim.adam import Adam, AdamW
from optimlab.optim.momentum import Momentum
from optimlab.optim.rmsprop import RMSprop
from optimlab.optim.sgd import SGD

Tensors = list[torch.Tensor]


def _k(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [K] hyperparameter shaped [K, 1, …, 1] to broadcast over a stacked tensor.

    Terms like 1−β are formed in float64 before this cast, as the reference forms them
    from Python floats: 1 − float32(0.999) would lose four digits.
    """
    return h.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _decayed(w: torch.Tensor, g: torch.Tensor, weight_decay: torch.Tensor | None) -> torch.Tensor:
    """g + λw (L2 weight decay); None means λ = 0 for every member."""
    return g if weight_decay is None else g + _k(weight_decay, w) * w


def _scratch(tmp: Tensors | None, i: int, like: torch.Tensor) -> torch.Tensor:
    """Caller-kept scratch tensor i, else a new one. A fresh large tensor page-faults on its
    first write: reusing one keeps each line below one memory-bound pass."""
    return torch.empty_like(like) if tmp is None else tmp[i]


def sgd_batched(params: Tensors, grads: Tensors, bufs: list[torch.Tensor | None], *,
                lr: torch.Tensor, momentum: torch.Tensor | None = None,
                weight_decay: torch.Tensor | None = None) -> None:
    """w ← w − η g; with momentum (torch's heavy ball, v₁ = g): v ← μv + g, w ← w − η v.

    `bufs[i] is None` on the first step; momentum=None means μ = 0 for every member
    (no buffer). A member with μ = 0 in a batch with momentum gets v = g: plain SGD.
    """
    for i, (w, g) in enumerate(zip(params, grads, strict=True)):
        g = _decayed(w, g, weight_decay)
        if momentum is not None:
            buf = bufs[i]
            if buf is None:
                buf = bufs[i] = g.clone()                   # v₁ = g
            else:
                buf.mul_(_k(momentum, buf)).add_(g)         # v ← μv + g
            g = buf
        w.addcmul_(g, _k(-lr, w))                           # w ← w − η g


def momentum_batched(params: Tensors, grads: Tensors, vs: Tensors, *, lr: torch.Tensor,
                     momentum: torch.Tensor, weight_decay: torch.Tensor | None = None) -> None:
    """v ← βv + (1−β)g, w ← w − η v (the lecture's EMA momentum)."""
    for w, g, v in zip(params, grads, vs, strict=True):
        g = _decayed(w, g, weight_decay)
        v.mul_(_k(momentum, v)).addcmul_(g, _k(1 - momentum, v))  # v ← βv + (1−β)g
        w.addcmul_(v, _k(-lr, w))                           # w ← w − η v


def rmsprop_batched(params: Tensors, grads: Tensors, ss: Tensors, *, lr: torch.Tensor,
                    alpha: torch.Tensor, eps: torch.Tensor,
                    weight_decay: torch.Tensor | None = None, tmp: Tensors | None = None
                    ) -> None:
    """s ← βs + (1−β)g², w ← w − η g/(√s + ε)   (β = alpha). `tmp`: scratch like params."""
    for i, (w, g, s) in enumerate(zip(params, grads, ss, strict=True)):
        g = _decayed(w, g, weight_decay)
        t = torch.mul(g, _k(1 - alpha, s), out=_scratch(tmp, i, w))
        s.mul_(_k(alpha, s)).addcmul_(t, g)                 # s ← βs + (1−β)g²
        denom = torch.sqrt(s, out=t).add_(_k(eps, s))       # √s + ε
        w.addcmul_(torch.div(g, denom, out=t), _k(-lr, w))  # w ← w − η g/(√s+ε)


def adam_batched(params: Tensors, grads: Tensors, vs: Tensors, ss: Tensors, step: int, *,
                 lr: torch.Tensor, beta1: torch.Tensor, beta2: torch.Tensor, eps: torch.Tensor,
                 weight_decay: torch.Tensor | None = None, decoupled: bool = False,
                 tmp: Tensors | None = None) -> None:
    """Adam (AdamW when `decoupled`) at step t = `step` (from 1), every member at the same t.
    `tmp`: scratch tensors like params (kept by the caller between steps)."""
    bc1, bc2 = 1 - beta1**step, 1 - beta2**step             # [K]: 1−β₁ᵗ, 1−β₂ᵗ
    for i, (w, g, v, s) in enumerate(zip(params, grads, vs, ss, strict=True)):
        if weight_decay is not None and decoupled:
            w.mul_(1 - _k(lr * weight_decay, w))            # w ← w(1 − ηλ)   (AdamW)
        elif weight_decay is not None:
            g = g + _k(weight_decay, w) * w                 # g ← g + λw      (Adam, L2)
        v.mul_(_k(beta1, v)).addcmul_(g, _k(1 - beta1, v))  # v ← β₁v + (1−β₁)g
        t = torch.mul(g, _k(1 - beta2, s), out=_scratch(tmp, i, w))
        s.mul_(_k(beta2, s)).addcmul_(t, g)                 # s ← β₂s + (1−β₂)g²
        denom = torch.div(s, _k(bc2, s), out=t).sqrt_().add_(_k(eps, s))  # √ŝ + ε
        w.add_(torch.div(v, denom, out=t).mul_(_k(-lr / bc1, w)))  # w ← w − η v̂/(√ŝ+ε)


_CLASSES = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}
# The keyword arguments a member may vary; every other one must keep its class default.
VARIED = {
    "sgd": ("lr", "momentum", "weight_decay"),
    "momentum": ("lr", "momentum", "weight_decay"),
    "rmsprop": ("lr", "alpha", "eps", "weight_decay"),
    "adam": ("lr", "betas", "eps", "weight_decay"),
    "adamw": ("lr", "betas", "eps", "weight_decay"),
}


def class_defaults(name: str) -> dict[str, Any]:
    """The keyword defaults of optimizer `name`'s class (the sweep's "one-shot" values)."""
    sig = inspect.signature(_CLASSES[name])
    return {k: p.default for k, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty and k not in ("foreach", "fused",
                                                                      "nonfinite")}


def member_hyperparameters(name: str, members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-member kwargs → {key: [K] float64 tensor} (betas → beta1, beta2; λ ≡ 0 → None).

    Each member's kwargs are checked by the optimizer class itself, so the messages are
    the single runs' ones; options the batched update does not vary are refused.
    """
    if name not in _CLASSES:
        raise ValueError(f"Invalid optimizer: {name!r}; allowed: {', '.join(_CLASSES)}")
    defaults = class_defaults(name)
    full = []
    for kw in members:
        _CLASSES[name]([torch.zeros(1)], **kw)  # the class's own validation
        for key, val in kw.items():
            if key not in VARIED[name] and val != defaults[key]:
                raise ValueError(f"Invalid {key}={val!r} for the batched {name}: it varies "
                                 f"only {', '.join(VARIED[name])}; use executor 'sequential'")
        full.append({**defaults, **kw})
    cols: dict[str, list[float]] = {}
    for kw in full:
        for key in VARIED[name]:
            vals = kw[key] if key == "betas" else (kw[key],)
            subs = ("beta1", "beta2") if key == "betas" else (key,)
            for sub, val in zip(subs, vals, strict=True):
                cols.setdefault(sub, []).append(float(val))
    hyper: dict[str, Any] = {k: torch.tensor(v, dtype=torch.float64) for k, v in cols.items()}
    for key in ("weight_decay", "momentum") if name == "sgd" else ("weight_decay",):
        if not bool(hyper[key].ne(0).any()):
            hyper[key] = None  # zero for every member: skip the term (and SGD's buffer)
    return hyper


class BatchedOptimizer:
    """K members of optimizer `name` over stacked parameters (leading dim K), in lockstep.

    `members[k]` holds member k's keyword arguments, as for the optimizer class. The
    caller owns `params` (updated in place by `step`); `select` keeps a subset of members
    (e.g. drops diverged ones) together with their state and hyperparameters.
    """

    def __init__(self, name: str, params: Tensors, members: Sequence[dict[str, Any]]):
        for i, p in enumerate(params):
            if p.dim() == 0 or p.shape[0] != len(members):
                raise ValueError(f"Invalid params: tensor {i} has shape {tuple(p.shape)}; "
                                 f"allowed: a leading dim of K = {len(members)} (the members)")
        self.name, self.params = name, list(params)
        self.hyper = member_hyperparameters(name, members)
        self.t = 0  # steps taken; Adam's bias correction uses t from 1
        zeros = lambda: [torch.zeros_like(p) for p in self.params]  # noqa: E731
        self.tmp = [torch.empty_like(p) for p in self.params]  # scratch, reused every step
        self.state: dict[str, list[Any]]
        if name == "sgd":
            self.state = {"bufs": [None] * len(self.params)}  # created on the first step
        elif name == "momentum":
            self.state = {"vs": zeros()}
        elif name == "rmsprop":
            self.state = {"ss": zeros()}
        else:
            self.state = {"vs": zeros(), "ss": zeros()}

    def step(self, grads: Tensors) -> None:
        """One update of every member with its own gradient slice `grads[i][k]`."""
        self.t += 1
        h, st, ps = self.hyper, self.state, self.params
        if self.name == "sgd":
            sgd_batched(ps, grads, st["bufs"], lr=h["lr"], momentum=h["momentum"],
                        weight_decay=h["weight_decay"])
        elif self.name == "momentum":
            momentum_batched(ps, grads, st["vs"], lr=h["lr"], momentum=h["momentum"],
                             weight_decay=h["weight_decay"])
        elif self.name == "rmsprop":
            rmsprop_batched(ps, grads, st["ss"], lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                            weight_decay=h["weight_decay"], tmp=self.tmp)
        else:
            adam_batched(ps, grads, st["vs"], st["ss"], self.t, lr=h["lr"], beta1=h["beta1"],
                         beta2=h["beta2"], eps=h["eps"], weight_decay=h["weight_decay"],
                         decoupled=self.name == "adamw", tmp=self.tmp)

    def select(self, index: torch.Tensor, params: Tensors) -> None:
        """Keep members `index` (int64, into the current K); `params` are the caller's
        parameters already reduced to those members."""
        self.params = list(params)
        self.tmp = [torch.empty_like(p) for p in self.params]
        self.hyper = {k: None if v is None else v[index] for k, v in self.hyper.items()}
        self.state = {k: [None if x is None else x[index] for x in xs]
                      for k, xs in self.state.items()}
