"""Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled", Algorithm 1), as the
`schedulefree` package's `AdamWScheduleFree` computes it."""

from __future__ import annotations

from typing import Any

import torch

from optimlab.kernels.formula import Formula, Kw, Modes
from optimlab.kernels.scalars import corrections
from optimlab.optim._base import BaseOptimizer, value
from optimlab.optim._formula import foreach, reference
from optimlab.optim._running import Running
from optimlab.optim._spec import NONNEG, Batched, Number, OptimizerSpec, Pair, register
from optimlab.optim.nadam import nadam_denominator


def schedulefree_element(w, g, z, s, *, beta2, rest2, eps, weight_decay, lr_t, ckp1, y_step,
                         bc2, decay):
    """One element, w = y (the point the gradient is taken at); the terms of step t
    (`_terms`): lr_t = ηₜ (warmed up), ckp1 = cₜ₊₁, y_step = ηₜ(β₁(1−cₜ₊₁) − 1), bc2 = 1−β₂ᵗ."""
    s = beta2 * s + rest2 * g * g                            # s ← β₂s + (1−β₂)g²
    u = g / nadam_denominator(s, eps=eps, bc2=bc2)           # u = g/(√ŝ + ε)
    if decay:
        u = u + weight_decay * w                             # decay taken at y
    w = w + ckp1 * (z - w)                                   # y ← (1−c)y + cz
    w = w + y_step * u                                       # y ← y + ηₜ(β₁(1−c) − 1)u
    z = z - lr_t * u                                         # z ← z − ηₜu
    return w, z, s


def schedulefree_move(w, z, *, c):
    """y ↔ x, since y = (1−β₁)z + β₁x: x = y + (1 − 1/β₁)(z − y), y = x + (1−β₁)(z − x)."""
    return w + c * (z - w)


# Σ_{i≤t} i^r·mᵢ^p for a (warm-up, r, p), with mᵢ = min(i/warm-up, 1): the weights of the
# average. The package weighs step i by i^r·(max η so far)^p; at a constant η that is
# i^r·(η·mᵢ)^p and η^p cancels from cₜ: one running sum per (warm-up, r, p) serves every η
def _warmup(warmup: float, t: int) -> float:
    return t / warmup if t <= warmup else 1.0


_weight_sum = Running(0.0, lambda key, i, total: total + i**key[1] * _warmup(key[0], i) ** key[2])


def average_weight(warmup: float, r: float, power: float, t: int) -> float:
    """cₜ, the weight of zₜ in xₜ = (1−cₜ)xₜ₋₁ + cₜzₜ: step t's weight over the sum so far."""
    total = _weight_sum((warmup, r, power), t)
    weight = t**r * _warmup(warmup, t) ** power
    return weight / total if total else 0.0


def _terms(kw: Kw, t: Any) -> dict[str, Any]:
    lr_t = kw["lr"] * _warmup(kw["warmup_steps"], t)
    c = average_weight(kw["warmup_steps"], kw["r"], kw["weight_lr_power"], t)
    return dict(lr_t=lr_t, ckp1=c, y_step=lr_t * (kw["beta1"] * (1 - c) - 1),
                bc2=corrections(kw["beta1"], kw["beta2"], t, True)[1])


FORMULA = Formula(
    name="adamw_schedulefree", element=schedulefree_element, states=("z", "s"),
    scalars=lambda kw: dict(beta2=kw["beta2"], rest2=1 - kw["beta2"], eps=kw["eps"],
                            weight_decay=kw["weight_decay"]),
    flags=lambda kw: dict(decay=kw["weight_decay"] != 0),
    terms=_terms, denominator=nadam_denominator, copies=("z",),
    keys={"z": "z", "s": "exp_avg_sq"},
    modes=Modes(state="z", move=schedulefree_move, to_eval=lambda kw: 1 - 1 / kw["beta1"],
                to_train=lambda kw: 1 - kw["beta1"]))


class AdamWScheduleFree(BaseOptimizer):
    r"""Schedule-Free AdamW: no learning-rate schedule; the gradient is taken at y, an
    interpolation of the SGD-like sequence z and its running average x::

        ηₜ = η·min(t/warmup_steps, 1),  cₜ = t^r ηₜ^p / Σᵢ i^r ηᵢ^p   (p = weight_lr_power)
        s ← β₂s + (1−β₂)g²,  u = g/(√(s/(1−β₂ᵗ)) + ε) + λy
        z ← z − ηₜu,  x ← (1−cₜ)x + cₜz,  y = (1−β₁)z + β₁x

    The parameters hold y while training and x after ``eval()``: call ``optimizer.eval()``
    before evaluating or saving, ``optimizer.train()`` before training again (the lab does).
    The move between them is element-wise but runs only at a switch, not in the step, so it
    is the formula's `Modes` (`schedulefree_move`), not part of the element; x is never
    stored (the package's memory: z and s).

    Defaults (the package's): lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    warmup_steps=0, r=0, weight_lr_power=2. The update is
    schedulefree.AdamWScheduleFree's, up to rounding, with three differences: it starts in
    train mode (the package refuses a step until ``train()``; calling it first is harmless
    here); the gradient is left as it was (the package divides it in place); and cₜ is
    worked out from t at today's η, so under an η schedule (which Schedule-Free does
    without) the package's weights, which keep the largest η so far, differ.
    State: ``step``, ``z``, ``exp_avg_sq`` (s); the group's ``train_mode``.
    """

    _impls = {"reference": reference(FORMULA), "foreach": foreach(FORMULA)}
    _counts = _takes_steps = True

    def __init__(self, params: Any, lr: float | torch.Tensor = 0.0025,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_steps: int = 0, r: float = 0.0,
                 weight_lr_power: float = 2.0, foreach: bool | None = None, *,
                 fused: bool | None = None, nonfinite: str = "apply"):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power,
                        foreach=foreach, fused=fused, train_mode=True)
        super().__init__(params, defaults, nonfinite=nonfinite)

    def _validate(self, group: dict[str, Any]) -> None:
        if value(group["betas"][0]) == 0:
            raise ValueError("Invalid betas[0]: 0.0; allowed: 0 < betas[0] < 1 (eval() "
                             "recovers x = (y − (1−β₁)z)/β₁)")
        warmup = group["warmup_steps"]
        if isinstance(warmup, float) and not warmup.is_integer():
            raise ValueError(f"Invalid warmup_steps: {warmup}; allowed: a whole number >= 0")

    def step(self, closure: Any = None) -> Any:
        if not all(group["train_mode"] for group in self.param_groups):
            raise RuntimeError("AdamWScheduleFree.step() in eval mode; call optimizer.train() "
                               "before training again")
        return super().step(closure)

    step.hooked = True  # type: ignore[attr-defined]  # torch.optim: do not wrap it again

    @torch.no_grad()
    def eval(self) -> None:
        """The parameters to x, the point to evaluate (and to save)."""
        self._switch(train=False)

    @torch.no_grad()
    def train(self) -> None:
        """The parameters back to y, the point the gradients are taken at."""
        self._switch(train=True)

    def _switch(self, train: bool) -> None:
        modes = FORMULA.modes
        assert modes is not None
        for group in self.param_groups:
            if group["train_mode"] == train:
                continue
            c = (modes.to_train if train else modes.to_eval)(self._kwargs(group))
            for p in group["params"]:
                state = self.state.get(p)
                if state and modes.state in state:
                    p.copy_(modes.move(p, state[modes.state], c=c))
            group["train_mode"] = train

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        return {"step": torch.tensor(0.0),
                "z": p.detach().clone(memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _kwargs(self, group: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        return dict(lr=value(group["lr"]), beta1=value(beta1), beta2=value(beta2),
                    eps=value(group["eps"]), weight_decay=value(group["weight_decay"]),
                    warmup_steps=value(group["warmup_steps"]), r=value(group["r"]),
                    weight_lr_power=value(group["weight_lr_power"]))


_COUNT = Number(0.0, float("inf"), "linear")
SPEC = register(OptimizerSpec(
    name="adamw-schedulefree", cls=AdamWScheduleFree, formula=FORMULA,
    hyperparameters=dict(lr=NONNEG, betas=Pair(("beta1", "beta2")), eps=NONNEG,
                         weight_decay=NONNEG, warmup_steps=_COUNT, r=_COUNT,
                         weight_lr_power=_COUNT),
    batched=Batched(per_member=("lr", "betas", "eps", "weight_decay", "warmup_steps", "r",
                                "weight_lr_power")),
    # the package's own class (an optional dependency: the bench skips it when missing)
    peer=("schedulefree:AdamWScheduleFree", dict(lr=0.0025)),
    # Defazio et al. 2024 (§4, AlgoPerf): η 1–10× a scheduled AdamW's, β₁ 0.9 to 0.95,
    # β₂ and decay as AdamW's
    search={"lr": (1e-4, 0.1), "beta1": (0.5, 0.99), "beta2": (0.9, 0.9999),
            "eps": (1e-10, 1e-2), "weight_decay": (1e-5, 1.0)},
))
