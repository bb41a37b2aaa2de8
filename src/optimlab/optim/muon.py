"""Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks"):
orthogonalized momentum for the hidden weight matrices, AdamW for every other parameter.

Muon stands apart from the one-formula design (`optimlab.kernels.formula`): its update
of one weight depends on the whole matrix (the Newton–Schulz iteration multiplies
matrices), so it has no element function for the fused kernels to compile. Its math is
still written once: `muon_momentum` (element-wise, on a matrix or on K stacked ones),
`newton_schulz` and `muon_matrix` serve the per-tensor path, the foreach path (matrices
of one shape stacked into one batched matmul) and the batched path over K members
(`BatchedMuon`). Its AdamW part is AdamW's formula (`optimlab.optim.adam`) itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from optimlab.optim._base import BaseOptimizer, value
from optimlab.optim._formula import (
    CPU_BATCH,
    Update,
    batched_states,
    batched_update,
    member_flags,
    member_scalars,
)
from optimlab.optim._spec import (
    NONNEG,
    UNIT,
    Batched,
    Choice,
    Flag,
    Integer,
    Numbers,
    OptimizerSpec,
    Pair,
    register,
)
from optimlab.optim.adam import FORMULA as ADAM
from optimlab.optim.adam import adam_foreach, adam_reference

# torch.optim.Muon's constants, from Jordan's post: the quintic's coefficients, chosen for
# the steepest slope at zero, and five steps
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def muon_momentum(g, buf, *, momentum, rest, nesterov):
    """B ← μB + (1−μ)g (in place); the direction: μB + (1−μ)g with nesterov, else B.
    rest = 1−μ; μ and rest are floats, or [K, 1, 1] tensors for K stacked members."""
    buf.lerp_(g, rest)
    return g.lerp(buf, momentum) if nesterov else buf


def newton_schulz(x: torch.Tensor, *, coefficients: Sequence[float], steps: int,
                  eps: float, dtype: torch.dtype | None) -> torch.Tensor:
    """≈ U S'Vᵀ of X = USVᵀ, S' ≈ 1 (in [0.7, 1.2] for the default coefficients), of each
    matrix of the last two dims (a leading dim: matrices stacked, one batched matmul),
    computed in `dtype` (None: x's). The quintic X ← aX + (bA + cA²)X, A = XXᵀ, after
    X ← X/max(‖X‖_F, ε), on the wide orientation; torch.optim.Muon's op for op."""
    a, b, c = coefficients
    addmm = torch.addmm if x.dim() == 2 else torch.baddbmm
    x = x.to(dtype or x.dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = addmm(x, addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def adjusted_lr(lr: Any, adjust_lr_fn: str | None, shape: Sequence[int]) -> Any:
    """η for an A×B matrix: η√max(1, A/B) ("original", Jordan's: the same RMS update for
    tall matrices) or 0.2η√max(A, B) ("match_rms_adamw", Liu et al. 2025: AdamW's RMS)."""
    rows, cols = shape[-2:]
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr * math.sqrt(max(1, rows / cols))


def ns_precision(ns_dtype: str | None, dtype: torch.dtype) -> torch.dtype:
    """The dtype Newton–Schulz runs in: `ns_dtype`'s; else, for float32 parameters,
    bfloat16 as torch's (its matmuls are the step's cost, and bfloat16's run up to twice as
    fast on CPU as float32's); float64 for float64 parameters, which ask for precision (the
    tests' references); float32 for bfloat16 and float16 ones, as every path computes
    there (a step then rounds once, where it stores)."""
    if ns_dtype is not None:
        return NS_DTYPES[ns_dtype]
    if dtype == torch.float32:
        return torch.bfloat16
    return torch.float64 if dtype == torch.float64 else torch.float32


def muon_matrix(w: torch.Tensor, g: torch.Tensor, buf: torch.Tensor, *, lr: Any,
                weight_decay: Any, momentum: Any, nesterov: bool, ns_coefficients: Any,
                ns_steps: int, eps: float, ns_dtype: str | None,
                adjust_lr_fn: str | None) -> None:
    """One Muon step of a matrix w, or of matrices stacked over a leading dim with one
    row of hyperparameters each (η, λ, μ as [K, 1, 1] float64 tensors):
    w ← w(1 − ηλ) − η' NS(direction)."""
    shrink, rest, step = 1 - lr * weight_decay, 1 - momentum, adjusted_lr(lr, adjust_lr_fn,
                                                                          w.shape)
    if isinstance(lr, torch.Tensor):  # formed in float64, rounded once, as a float is
        shrink, rest, momentum, step = (x.to(w.dtype) for x in (shrink, rest, momentum, step))
    direction = muon_momentum(g, buf, momentum=momentum, rest=rest, nesterov=nesterov)
    o = newton_schulz(direction, coefficients=ns_coefficients, steps=ns_steps, eps=eps,
                      dtype=ns_precision(ns_dtype, w.dtype))
    w.mul_(shrink)
    if isinstance(step, torch.Tensor):
        w.sub_(step * o)
    else:
        w.add_(o, alpha=-step)  # torch's op: w + (−η')·o in w's dtype, o as it is


def muon_reference(params: list[torch.Tensor], grads: list[torch.Tensor],
                   bufs: list[torch.Tensor], **kw: Any) -> None:
    """Muon one matrix at a time."""
    for w, g, buf in zip(params, grads, bufs, strict=True):
        muon_matrix(w, g, buf, **kw)


def muon_foreach(params: list[torch.Tensor], grads: list[torch.Tensor],
                 bufs: list[torch.Tensor], **kw: Any) -> None:
    """Muon with the matrices of one shape and dtype stacked: one batched matmul each. On
    CPU only the small ones (up to `CPU_BATCH` elements), whose products cost less than
    their calls: a large one's products run as fast alone, without the stacking copies."""
    same: dict[tuple[Any, ...], list[int]] = {}
    for i, w in enumerate(params):
        alone = w.is_cpu and w.numel() > CPU_BATCH
        same.setdefault((w.shape, w.dtype, w.device, i if alone else -1), []).append(i)
    for rows in same.values():
        if len(rows) == 1:
            muon_matrix(params[rows[0]], grads[rows[0]], bufs[rows[0]], **kw)
            continue
        ws, bs = [params[i] for i in rows], [bufs[i] for i in rows]
        w, buf = torch.stack(ws), torch.stack(bs)
        muon_matrix(w, torch.stack([grads[i] for i in rows]), buf, **kw)
        torch._foreach_copy_(ws, list(w.unbind()))
        torch._foreach_copy_(bs, list(buf.unbind()))


class Paths(NamedTuple):
    """One implementation of both parts: the matrices' and the others' (AdamW's)."""

    muon: Update
    adamw: Update


def muon_indices(tensors: Sequence[torch.Tensor], adamw_ends: bool) -> list[int]:
    """Which of `tensors` Muon takes: the real 2-D ones, but with `adamw_ends` its first and last
    2-D one, which a model that registers its layers from input to output (nn.Sequential,
    the lab's models) holds as its input embedding and its output layer (Jordan et al.
    2024: Muon is for the hidden layers)."""
    matrices = [i for i, p in enumerate(tensors) if p.dim() == 2 and not p.is_complex()]
    ends = {matrices[0], matrices[-1]} if adamw_ends and matrices else set()
    return [i for i in matrices if i not in ends]


def muon_groups(params: list[Any], adamw_ends: bool) -> tuple[list[Any], list[Any]]:
    """(Muon's, AdamW's) parameters of one list of tensors or (name, tensor) pairs."""
    mine = set(muon_indices([p[1] if isinstance(p, tuple) else p for p in params],
                            adamw_ends))
    return ([p for i, p in enumerate(params) if i in mine],
            [p for i, p in enumerate(params) if i not in mine])


# AdamW's keys in a group of the AdamW part -> the constructor's argument they default to
ADAMW_KEYS = {"lr": "adamw_lr", "betas": "adamw_betas", "eps": "adamw_eps",
              "weight_decay": "adamw_weight_decay"}


class Muon(BaseOptimizer):
    r"""Muon on the hidden weight matrices, AdamW on the rest, from one constructor::

        B ← μB + (1−μ)g                              (B₀ = 0)
        D = μB + (1−μ)g  (nesterov)   or   D = B
        O = NS₅(D): X ← D/max(‖D‖_F, ε), then 5× X ← aX + (bXXᵀ + c(XXᵀ)²)X
        w ← w(1 − ηλ) − η√max(1, A/B) O               (w an A×B matrix)

    Everything else (biases, norms' gains, and what the user marks: embeddings, the
    output layer) takes AdamW with its own η, βs, ε and λ (Jordan et al. 2024 pair Muon
    with AdamW so; Keller Jordan's ``MuonWithAuxAdam`` marks groups the same way):
    a param group with ``use_muon=True`` is Muon's (2-D tensors only), one with
    ``use_muon=False`` AdamW's, whose ``lr``, ``betas``, ``eps`` and ``weight_decay``
    default to ``adamw_lr``, ``adamw_betas``, ``adamw_eps``, ``adamw_weight_decay``. A
    group that does not say is split: its 2-D tensors to Muon, the others to AdamW; with
    ``adamw_ends=True`` its first and last 2-D tensor to AdamW too (see `muon_groups`).

    Defaults: torch.optim.Muon's for the matrices (lr=1e-3, weight_decay=0.1,
    momentum=0.95, nesterov=True, ns_coefficients=(3.4445, −4.7750, 2.0315), eps=1e-7,
    ns_steps=5, adjust_lr_fn=None: "original"), torch.optim.AdamW's for the rest.
    The update is torch.optim.Muon's; NS runs in bfloat16 for float32 parameters, as
    torch's, in float64 for float64 ones and in float32 for narrower ones (`ns_precision`;
    ``ns_dtype`` chooses: "bfloat16", "float32", "float64"), so ``ns_dtype="bfloat16"``
    gives torch's numbers in any dtype. State (torch's names):
    ``momentum_buffer`` (B) for the matrices; AdamW's ``step``, ``exp_avg``, ``exp_avg_sq``
    for the rest.
    """

    _impls = {"reference": Paths(muon_reference, adam_reference),  # type: ignore[dict-item]
              "foreach": Paths(muon_foreach, adam_foreach)}  # type: ignore[dict-item]
    # a replayed step snapshots the spec's hyperparameters, not an AdamW group's own keys
    _replays = False

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None, *,
                 ns_dtype: str | None = None, adamw_lr: float = 1e-3,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8,
                 adamw_weight_decay: float = 1e-2, adamw_ends: bool = False,
                 foreach: bool | None = None, fused: bool | None = None,
                 nonfinite: str = "apply"):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                        adjust_lr_fn=adjust_lr_fn, ns_dtype=ns_dtype, adamw_lr=adamw_lr,
                        adamw_betas=adamw_betas, adamw_eps=adamw_eps,
                        adamw_weight_decay=adamw_weight_decay, adamw_ends=adamw_ends,
                        foreach=foreach, fused=fused)
        super().__init__(params, defaults, nonfinite=nonfinite)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """A group that sets ``use_muon`` as it is; one that does not, split (`muon_groups`)."""
        if "use_muon" not in param_group:
            params = param_group["params"]
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            ends = param_group.get("adamw_ends", self.defaults["adamw_ends"])
            split = muon_groups(params, ends)
            for use_muon, part in zip((True, False), split):
                if part or not any(split):
                    self.add_param_group({**param_group, "params": part, "use_muon": use_muon})
            return
        group = dict(param_group)
        if not group["use_muon"]:
            for key, source in ADAMW_KEYS.items():
                group.setdefault(key, group.get(source, self.defaults[source]))
        super().add_param_group(group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        for group in state["param_groups"]:
            group.setdefault("use_muon", True)  # torch.optim.Muon's groups: matrices
        super().__setstate__(state)

    def _validate(self, group: dict[str, Any]) -> None:
        Flag().check("use_muon", group["use_muon"])
        if not group["use_muon"]:
            Pair(("beta1", "beta2")).check("betas", group["betas"])
            return
        for i, p in enumerate(group["params"]):
            if p.dim() != 2 or p.is_complex():
                raise ValueError(f"Invalid params: parameter {i} of a Muon group has shape "
                                 f"{tuple(p.shape)} and dtype {p.dtype}; allowed: real 2-D "
                                 "matrices (use_muon=False gives the others to AdamW)")

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        return {}  # made by `_lists`, which knows the group's part

    def _lists(self, group: dict[str, Any], params: list[torch.Tensor],
               states: list[dict[str, Any]], kw: dict[str, Any]) -> list[list[Any]]:
        zeros = lambda p: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        if group["use_muon"]:
            for p, st in zip(params, states):
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = zeros(p)
            return [[st["momentum_buffer"] for st in states]]
        for p, st in zip(params, states):
            if "exp_avg" not in st:
                st.update(step=torch.tensor(0.0), exp_avg=zeros(p), exp_avg_sq=zeros(p))
        return [[st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states],
                [None] * len(states)]

    def _kernel(self, group: dict[str, Any]) -> str | None:
        """The matrices have no fused kernel; the AdamW part takes AdamW's."""
        return None if group["use_muon"] else ADAM.name

    def _update(self, group: dict[str, Any], fn: Any, views: Any, params: list[torch.Tensor],
                grads: list[torch.Tensor], states: list[dict[str, Any]]) -> None:
        kw = self._kwargs(group)
        lists = [views(ts) for ts in self._lists(group, params, states, kw)]
        if group["use_muon"]:
            fn.muon(params, grads, *lists, **kw)
            return
        steps = self._advance(group, states)  # t ← t + 1
        adamw = fn.adamw if isinstance(fn, Paths) else fn  # else the fused kernel's call
        adamw(views(params), views(grads), *lists, steps, **kw)

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        return muon_kwargs(group) if group["use_muon"] else adamw_kwargs(group)


def muon_kwargs(group: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `muon_matrix` from a Muon group (or a member's options)."""
    return dict(lr=value(group["lr"]), weight_decay=value(group["weight_decay"]),
                momentum=value(group["momentum"]), nesterov=bool(group["nesterov"]),
                ns_coefficients=tuple(map(float, group["ns_coefficients"])),
                ns_steps=int(group["ns_steps"]), eps=value(group["eps"]),
                ns_dtype=group["ns_dtype"], adjust_lr_fn=group["adjust_lr_fn"])


def adamw_kwargs(group: dict[str, Any]) -> dict[str, Any]:
    """AdamW's update arguments (`adam_element`) from a group of the AdamW part."""
    beta1, beta2 = group["betas"]
    return dict(lr=value(group["lr"]), beta1=value(beta1), beta2=value(beta2),
                eps=value(group["eps"]), weight_decay=value(group["weight_decay"]),
                decoupled=True, amsgrad=False, maximize=False, bias_correction=True)


class BatchedMuon:
    """The step of K members over stacked parameters (leading dim K), each with its own
    options (`members[k]`: all of them, defaults filled): the matrices' Newton–Schulz as
    batched matmuls over [K, m, n], η, λ and μ one per member; the others by AdamW's
    formula with each member's AdamW options (`optimlab.optim.batched`). What depends on
    the members alone (which tensors are matrices, the per-member arguments) is worked out
    here, once: a batch compacted to fewer members makes a new one."""

    def __init__(self, params: list[torch.Tensor], members: Sequence[dict[str, Any]]):
        self.mine = sorted(set(muon_indices([p[0] for p in params], members[0]["adamw_ends"])))
        self.others = [i for i in range(len(params)) if i not in self.mine]
        self.kw = muon_kwargs(members[0])
        for key in ("lr", "weight_decay", "momentum"):
            self.kw[key] = torch.tensor([value(m[key]) for m in members],
                                        dtype=torch.float64).reshape(-1, 1, 1)
        self.kws = [adamw_kwargs({key: m[source] for key, source in ADAMW_KEYS.items()})
                    for m in members]
        self.flags = member_flags(ADAM, self.kws)
        self.scalars = member_scalars(ADAM, self.kws) if self.others else {}

    def __call__(self, params: list[torch.Tensor], grads: list[torch.Tensor],
                 state: dict[str, list[Any]], t: int) -> None:
        if self.mine:
            bufs = state.setdefault("momentum_buffer", [None] * len(params))
            for i in self.mine:
                if bufs[i] is None:
                    bufs[i] = torch.zeros_like(params[i])
                muon_matrix(params[i], grads[i], bufs[i], **self.kw)
        if self.others:
            ws = [params[i] for i in self.others]
            lists = batched_states(ADAM, ws, state, self.flags, self.kws[0])
            batched_update(ADAM, ws, [grads[i] for i in self.others], lists, t, self.kws,
                           self.flags, self.scalars)


class TorchMuonAdamW(torch.optim.Optimizer):
    """torch's own pair, as torch.optim.Muon's documentation uses it: torch.optim.Muon on
    the 2-D parameters (`muon_groups`), torch.optim.AdamW on the others; what the bench
    times Muon against. `foreach` and `fused` go to AdamW (torch's Muon has neither)."""

    def __init__(self, params: Any, adamw_lr: float = 1e-3,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8,
                 adamw_weight_decay: float = 1e-2, adamw_ends: bool = False,
                 foreach: bool | None = None, fused: bool | None = None, **muon: Any):
        params = list(params)
        matrices, others = muon_groups(params, adamw_ends)
        self.parts: list[torch.optim.Optimizer] = []
        if matrices:
            self.parts.append(torch.optim.Muon(matrices, **muon))
        if others:
            self.parts.append(torch.optim.AdamW(
                others, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps,
                weight_decay=adamw_weight_decay, foreach=foreach, fused=fused))
        super().__init__(params, {})
        # the parts' own groups, so that a scheduler's η reaches them
        self.param_groups = [g for part in self.parts for g in part.param_groups]

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts:
            part.step()
        return loss


SPEC = register(OptimizerSpec(
    name="muon", cls=Muon, formula=None,
    hyperparameters=dict(
        lr=NONNEG, weight_decay=NONNEG, momentum=UNIT, nesterov=Flag(),
        ns_coefficients=Numbers(3), eps=NONNEG, ns_steps=Integer(0, 100),
        adjust_lr_fn=Choice(ADJUST_LR_FNS), ns_dtype=Choice((None, *NS_DTYPES)),
        adamw_lr=NONNEG, adamw_betas=Pair(("adamw_beta1", "adamw_beta2")), adamw_eps=NONNEG,
        adamw_weight_decay=NONNEG, adamw_ends=Flag()),
    batched=Batched(per_member=("lr", "weight_decay", "momentum", "adamw_lr", "adamw_betas",
                                "adamw_eps", "adamw_weight_decay"),
                    shared=("nesterov", "ns_coefficients", "eps", "ns_steps", "adjust_lr_fn",
                            "ns_dtype", "adamw_ends"),
                    update=BatchedMuon),
    peer=(TorchMuonAdamW, {}),
    # η around Jordan's 0.02 (torch's default 1e-3 to the speedrun's 0.05), μ around 0.95,
    # λ around Liu et al.'s 0.1; the AdamW part as AdamW's own space (docs/lab.md)
    search={"lr": (1e-4, 0.1), "momentum": (0.8, 0.99), "weight_decay": (1e-4, 0.3),
            "adamw_lr": (1e-5, 0.1), "adamw_eps": (1e-10, 1e-2)},
))
