"""The one table of optimizers that drives the tests, after torch's `OptimizerInfo`/`optim_db`.

One row per registered optimizer (`optimlab.optim.SPECS`): its independent float64 NumPy
reference (numpy_reference.py, written apart from the code under test), the options to
test, its members for the batched update, and its torch.optim peer where the update
coincides. What a row does not say comes from the specification: the class, the
hyperparameters and their defaults, whether a fused kernel and a batched update exist,
and the peer's class. Every check runs over every row; a new optimizer adds its row
here (test_optim_db.py fails until it does) and no test file changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy_reference as ref
from conftest import GradientField
from hypothesis import strategies as st

from optimlab.optim import SPECS
from optimlab.optim._spec import OptimizerSpec

Kw = dict[str, Any]

# How a test asks a class for each path; `opt.last_impl` reports the one that ran.
PATHS: dict[str, Kw] = {"reference": dict(foreach=False), "foreach": dict(foreach=True),
                        "fused": dict(fused=True)}


def never(kw: Kw) -> bool:
    return False


def always(kw: Kw) -> bool:
    return True


@dataclass(frozen=True)
class TorchPeer:
    """The torch.optim class of the specification's `peer`, where its update is ours.

    cases: our keyword arguments where the two coincide (float64, ≤ 1e-9 over 500 steps);
    translate: our keyword arguments -> the peer's (the known differences, in code);
    state_loads: the directions a state_dict loads across ("torch->ours", "ours->torch")
        and training goes on as one run;
    cycles: a momentum cycled by OneCycleLR gives the peer's update;
    float64_state: the peer keeps a scalar state in float32 unless torch's default dtype
        is float64 (NAdam's mu_product): its float64 runs set that default;
    differences: the known differences, in words.
    """

    cases: tuple[Kw, ...]
    translate: Callable[[Kw], Kw] = dict
    state_loads: tuple[str, ...] = ("torch->ours", "ours->torch")
    cycles: bool = True
    float64_state: bool = False
    differences: str = ""


@dataclass(frozen=True)
class OptimizerInfo:
    """One optimizer's row.

    reference: the NumPy class, `reference(**kw).step(w, g)` -> the new w (float64);
    cases: the options to test, each against the reference on every path; the first is the
        plain one (lr only), and every hyperparameter leaves its default in some case;
    rich: one case with many options on and all of its state (a low-precision, threads,
        NaN/Inf or resume check runs this one per optimizer);
    batched: lists of members for `BatchedOptimizer` (zero and non-zero terms mixed, so a
        term skipped in one member cannot leak into another);
    peer: the torch.optim peer (None: no torch.optim class does our update);
    converges: problem -> (keyword arguments, steps) that reach its minimum;
    hyper: a hypothesis strategy of keyword arguments;
    bytes_per_param: the fewest bytes a step at the defaults moves per float32 parameter (w
        read and written, g read, each state tensor read and written: DESIGN.md's table);
    chaotic: the options whose dynamics near a minimum part any two correct float64
        implementations (RMSprop's g/(√s + ε) flips with a vanishing g): they run on the
        slope field, which has no minimum;
    ill_conditioned: the options where hypothesis's random gradients make the update mostly
        rounding (then only the NaN pattern is compared).
    """

    name: str
    reference: Callable[..., Any]
    cases: tuple[Kw, ...]
    rich: Kw
    batched: tuple[tuple[Kw, ...], ...]
    peer: TorchPeer | None
    converges: dict[str, tuple[Kw, int]]
    hyper: st.SearchStrategy
    bytes_per_param: int
    chaotic: Callable[[Kw], bool] = never
    ill_conditioned: Callable[[Kw], bool] = never

    @property
    def spec(self) -> OptimizerSpec:
        return SPECS[self.name]

    @property
    def cls(self) -> type:
        return self.spec.cls

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths the class has: reference and foreach always, fused with a kernel."""
        return tuple(p for p in PATHS if p != "fused" or self.spec.kernel)

    @property
    def peer_cls(self) -> type:
        return self.spec.peer[0]

    def run_reference(self, kw: Kw, field: GradientField, steps: int,
                      grad: Callable[[int, np.ndarray, int], np.ndarray] | None = None
                      ) -> list[np.ndarray]:
        """The NumPy reference from the field's start, `steps` steps of `grad` (default: the
        field's), each tensor on its own: the flat weights."""
        grad = grad or field.grad
        out = []
        for i, w in enumerate(field.w0):
            opt = self.reference(**kw)
            for t in range(1, steps + 1):
                w = opt.step(w, grad(i, w, t))
            out.append(w)
        return out

    def field(self, kw: Kw, shapes: list[tuple[int, ...]] | None = None) -> GradientField:
        """The gradient field for options `kw` (flipped for maximize=True)."""
        return GradientField(**({"shapes": shapes} if shapes else {}),
                             sign=-1.0 if kw.get("maximize") else 1.0,
                             kind="slope" if self.chaotic(kw) else "bowl")


def _ema_momentum_as_heavy_ball(kw: Kw) -> Kw:
    """v = (1−β)v' for torch's v' ← βv' + g (v'₁ = g): η on v is η(1−β) on v'."""
    beta = kw.get("momentum", SPECS["momentum"].defaults["momentum"])
    return {**kw, "lr": kw["lr"] * (1 - beta), "momentum": beta}


_ADAM_HYPER = st.fixed_dictionaries({
    "lr": st.floats(1e-4, 0.1), "betas": st.tuples(st.floats(0, 0.99), st.floats(0.5, 0.9999)),
    "amsgrad": st.booleans(), "weight_decay": st.floats(0, 0.1),
    "bias_correction": st.booleans()})


ROWS = [
    OptimizerInfo(
        name="sgd", reference=ref.SGD,
        cases=(dict(lr=0.05),
               dict(lr=0.05, weight_decay=0.1, maximize=True),
               dict(lr=0.02, momentum=0.9),
               dict(lr=0.02, momentum=0.9, dampening=0.5, weight_decay=0.05),
               dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.01, maximize=True)),
        rich=dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.01, maximize=True),
        batched=((dict(lr=0.05), dict(lr=0.02, weight_decay=0.1), dict(lr=0.01)),
                 (dict(lr=0.02, momentum=0.9), dict(lr=0.05),
                  dict(lr=0.01, momentum=0.5, weight_decay=0.01))),
        peer=TorchPeer(
            cases=(dict(lr=0.05), dict(lr=0.02, momentum=0.9),
                   dict(lr=0.02, momentum=0.9, dampening=0.3),
                   dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-2)),
            differences="none: torch.optim.SGD's update"),
        converges={"quadratic": (dict(lr=0.05), 400), "rosenbrock": (dict(lr=1e-3), 20000)},
        bytes_per_param=12,
        hyper=st.fixed_dictionaries({
            "lr": st.floats(1e-4, 0.5), "momentum": st.sampled_from([0.0, 0.5, 0.9]),
            "weight_decay": st.floats(0, 0.1), "maximize": st.booleans()}),
    ),
    OptimizerInfo(
        name="momentum", reference=ref.Momentum,
        cases=(dict(lr=0.05),
               dict(lr=0.05, momentum=0.0),
               dict(lr=0.05, weight_decay=0.1, maximize=True),
               dict(lr=0.05, momentum=0.95, nesterov=True, weight_decay=0.05)),
        rich=dict(lr=0.05, momentum=0.95, nesterov=True, weight_decay=0.05),
        batched=((dict(lr=0.05), dict(lr=0.1, momentum=0.0), dict(lr=0.02, momentum=0.95)),
                 (dict(lr=0.05, weight_decay=0.1), dict(lr=0.03, momentum=0.5))),
        peer=TorchPeer(
            cases=(dict(lr=0.05), dict(lr=0.05, momentum=0.95, nesterov=True, weight_decay=0.05),
                   dict(lr=0.05, weight_decay=0.1, maximize=True)),
            translate=_ema_momentum_as_heavy_ball, state_loads=(),
            differences="EMA v ← βv + (1−β)g where torch's heavy ball sums (v ← βv + g): the "
                        "same trajectory at torch's η(1−β), its momentum_buffer 1/(1−β) times "
                        "ours"),
        converges={"quadratic": (dict(lr=0.05), 400), "rosenbrock": (dict(lr=2e-3), 10000)},
        bytes_per_param=20,
        hyper=st.fixed_dictionaries({
            "lr": st.floats(1e-4, 0.5), "momentum": st.floats(0, 0.99), "nesterov": st.booleans(),
        }).map(lambda kw: {**kw, "nesterov": kw["nesterov"] and kw["momentum"] > 0}),
    ),
    OptimizerInfo(
        name="rmsprop", reference=ref.RMSprop,
        cases=(dict(lr=1e-2),
               dict(lr=1e-2, alpha=0.99, centered=True, maximize=True),
               dict(lr=1e-3, momentum=0.9, weight_decay=0.05),
               dict(lr=1e-3, momentum=0.5, centered=True, weight_decay=0.01),
               dict(lr=1e-2, eps=1e-3, maximize=True)),
        rich=dict(lr=1e-3, momentum=0.5, centered=True, weight_decay=0.01),
        batched=((dict(lr=1e-2), dict(lr=1e-3, alpha=0.99), dict(lr=3e-3, eps=1e-3)),
                 (dict(lr=1e-2, weight_decay=0.01), dict(lr=1e-2, alpha=0.5)),
                 (dict(lr=1e-2, centered=True), dict(lr=1e-3, alpha=0.99, centered=True))),
        peer=TorchPeer(
            cases=(dict(lr=1e-2, alpha=0.99),
                   dict(lr=1e-2, alpha=0.99, centered=True, momentum=0.5, weight_decay=0.01)),
            differences="centered: ours clamps s − m² at 0 where torch's gives NaN "
                        "(test_centered_rmsprop.py); defaults lr=1e-3, alpha=0.9"),
        converges={"quadratic": (dict(lr=1e-3), 5000), "rosenbrock": (dict(lr=1e-3), 10000)},
        bytes_per_param=20,
        hyper=st.fixed_dictionaries({
            "lr": st.floats(1e-4, 0.1), "alpha": st.floats(0, 0.999),
            "eps": st.floats(1e-8, 1e-2), "centered": st.booleans(),
            "momentum": st.sampled_from([0.0, 0.9])}),
        chaotic=always,
        # a variance from ~1 sample: s − m² is mostly rounding, its root differs between
        # any two dtypes or orders of operations (no path may turn it into NaN)
        ill_conditioned=lambda kw: kw["centered"] and kw["alpha"] < 0.5,
    ),
    OptimizerInfo(
        name="adam", reference=ref.Adam,
        cases=(dict(lr=1e-2),
               dict(lr=1e-2, betas=(0.5, 0.9), eps=1e-6, amsgrad=True, weight_decay=0.1),
               dict(lr=1e-2, weight_decay=0.1, maximize=True),
               dict(lr=1e-2, betas=(0.8, 0.99), bias_correction=False),
               dict(lr=1e-2, betas=(0.5, 0.9), amsgrad=True, bias_correction=False)),
        rich=dict(lr=1e-2, betas=(0.5, 0.9), eps=1e-6, amsgrad=True, weight_decay=0.1),
        batched=((dict(lr=1e-2), dict(lr=1e-3, betas=(0.5, 0.9)), dict(lr=3e-2, eps=1e-4)),
                 (dict(lr=1e-2, weight_decay=0.1), dict(lr=1e-2, betas=(0.0, 0.99))),
                 (dict(lr=1e-2, bias_correction=False),
                  dict(lr=1e-3, betas=(0.5, 0.99), bias_correction=False))),
        peer=TorchPeer(
            cases=(dict(lr=1e-3),
                   dict(lr=1e-2, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.05),
                   dict(lr=1e-2, maximize=True)),
            differences="ours takes ŝ = s/(1−β₂ᵗ) as the lecture does (torch divides √s): "
                        "equal to rounding, not bit for bit; bias_correction=False is ours"),
        converges={"quadratic": (dict(lr=1e-2), 2000),
                   "rosenbrock": (dict(lr=1e-2), 6000)},
        bytes_per_param=28,
        hyper=_ADAM_HYPER,
        # without bias correction Adam is an RMSprop with momentum
        chaotic=lambda kw: kw.get("bias_correction") is False,
    ),
    OptimizerInfo(
        name="adamw", reference=ref.AdamW,
        cases=(dict(lr=1e-2),
               dict(lr=1e-2, weight_decay=0.3, amsgrad=True),
               dict(lr=1e-2, betas=(0.8, 0.999), eps=1e-6, weight_decay=0.1, maximize=True),
               dict(lr=1e-2, weight_decay=0.3, bias_correction=False)),
        rich=dict(lr=1e-2, weight_decay=0.3, amsgrad=True),
        batched=((dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.3), dict(lr=1e-3, weight_decay=0)),),
        peer=TorchPeer(
            cases=(dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.2, amsgrad=True)),
            differences="as Adam's"),
        converges={"quadratic": (dict(lr=1e-2), 2000),
                   "rosenbrock": (dict(lr=1e-2, weight_decay=0.0), 6000)},
        bytes_per_param=28,
        hyper=_ADAM_HYPER,
        chaotic=lambda kw: kw.get("bias_correction") is False,
    ),
    OptimizerInfo(
        name="adagrad", reference=ref.Adagrad,
        cases=(dict(lr=0.1),
               dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-6),
               dict(lr=0.05, weight_decay=0.1, maximize=True),
               dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-6,
                    weight_decay=0.05, maximize=True)),
        rich=dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-6,
                  weight_decay=0.05, maximize=True),
        batched=((dict(lr=0.1), dict(lr=0.05, lr_decay=0.01, weight_decay=0.1),
                  dict(lr=0.2, eps=1e-3)),
                 (dict(lr=0.1, initial_accumulator_value=0.5),
                  dict(lr=0.05, initial_accumulator_value=0.5, lr_decay=0.1))),
        peer=TorchPeer(
            cases=(dict(lr=0.1),
                   dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.5,
                        weight_decay=0.05, eps=1e-6),
                   dict(lr=0.1, initial_accumulator_value=0.1, maximize=True)),
            differences="dense gradients only (torch's takes sparse ones too)"),
        converges={"quadratic": (dict(lr=0.5), 2000), "rosenbrock": (dict(lr=0.3), 12000)},
        bytes_per_param=20,
        hyper=st.fixed_dictionaries({
            "lr": st.floats(1e-4, 0.5), "lr_decay": st.floats(0, 0.1),
            "initial_accumulator_value": st.floats(0, 1), "eps": st.floats(1e-10, 1e-2),
            "weight_decay": st.floats(0, 0.1)}),
    ),
    OptimizerInfo(
        name="lion", reference=ref.Lion,
        cases=(dict(lr=1e-3), dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.5)),
        rich=dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.5),
        batched=((dict(lr=1e-3), dict(lr=3e-3, betas=(0.5, 0.9), weight_decay=0.1),
                  dict(lr=1e-4, weight_decay=0.0)),),
        peer=None,  # lion-pytorch's Lion: tests/test_peers.py
        converges={"quadratic": (dict(lr=1e-3), 5000), "rosenbrock": (dict(lr=1e-3), 20000)},
        bytes_per_param=20,
        hyper=st.fixed_dictionaries({
            "lr": st.floats(1e-5, 0.1),
            "betas": st.tuples(st.floats(0, 0.999), st.floats(0, 0.999)),
            "weight_decay": st.floats(0, 1)}),
        # sign(c) near a minimum, where c → 0, flips with any rounding
        chaotic=always,
    ),
    OptimizerInfo(
        name="nadam", reference=ref.NAdam,
        cases=(dict(lr=1e-2),
               dict(lr=1e-2, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.1, momentum_decay=0.01),
               dict(lr=1e-2, weight_decay=0.3, decoupled_weight_decay=True, maximize=True)),
        rich=dict(lr=1e-2, weight_decay=0.3, decoupled_weight_decay=True, maximize=True),
        batched=((dict(lr=1e-2), dict(lr=1e-3, betas=(0.5, 0.999), weight_decay=0.1),
                  dict(lr=3e-2, eps=1e-4, momentum_decay=0.02)),
                 (dict(lr=1e-2, weight_decay=0.3, decoupled_weight_decay=True),
                  dict(lr=1e-3, decoupled_weight_decay=True))),
        peer=TorchPeer(
            cases=(dict(lr=1e-2), dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05),
                   dict(lr=1e-2, weight_decay=0.2, decoupled_weight_decay=True),
                   dict(lr=1e-2, maximize=True, momentum_decay=0.01)),
            state_loads=("torch->ours",), cycles=False, float64_state=True,
            differences="μ's product Πₜ from t (at today's β₁), in float64, not kept in the "
                        "state (torch's mu_product): torch's state loads into ours, not back"),
        converges={"quadratic": (dict(lr=1e-2), 2000), "rosenbrock": (dict(lr=3e-3), 10000)},
        bytes_per_param=28,
        hyper=st.fixed_dictionaries({
            "lr": st.floats(1e-4, 0.1),
            "betas": st.tuples(st.floats(0, 0.99), st.floats(0.5, 0.9999)),
            "weight_decay": st.floats(0, 0.1), "momentum_decay": st.floats(0, 0.1),
            "decoupled_weight_decay": st.booleans()}),
        # a short memory of s (β₂ < 0.999) makes g/(√ŝ + ε) near a minimum a sign, which
        # flips with rounding (as RMSprop's)
        chaotic=lambda kw: kw.get("betas", (0.9, 0.999))[1] < 0.999,
    ),
    OptimizerInfo(
        name="adamw-schedulefree", reference=ref.AdamWScheduleFree,
        cases=(dict(lr=1e-2),
               dict(lr=1e-2, warmup_steps=50, weight_decay=0.1),
               dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, warmup_steps=20, r=1.0,
                    weight_lr_power=1.0)),
        rich=dict(lr=1e-2, warmup_steps=50, weight_decay=0.1),
        batched=((dict(lr=1e-2), dict(lr=3e-3, betas=(0.5, 0.99), weight_decay=0.1),
                  dict(lr=3e-2, warmup_steps=20, r=1.0, weight_lr_power=0.0)),),
        peer=None,  # the schedulefree package's AdamWScheduleFree: tests/test_peers.py
        converges={"quadratic": (dict(lr=1e-2), 3000), "rosenbrock": (dict(lr=1e-2), 20000)},
        bytes_per_param=28,
        hyper=st.fixed_dictionaries({
            "lr": st.floats(1e-4, 0.1),
            "betas": st.tuples(st.floats(0.1, 0.99), st.floats(0.5, 0.9999)),
            "weight_decay": st.floats(0, 0.1), "warmup_steps": st.integers(0, 50),
            "r": st.floats(0, 2)}),
        # near a minimum, y steps by g/(√ŝ + ε), whose sign flips with a vanishing g (as
        # RMSprop's; r > 0, weighing the latest z most, parts two float64 runs in 1000 steps)
        chaotic=always,
    ),
]
DB = {row.name: row for row in ROWS}
NAMES = list(DB)


def cases(where: Callable[[OptimizerInfo], bool] = always
          ) -> tuple[list[tuple[str, Kw]], list[str]]:
    """(name, keyword arguments) of every case of every row `where` holds, and their ids
    ("adam-2": the third case of adam's row)."""
    return _listed((row.name, row.cases) for row in ROWS if where(row))


def rich() -> tuple[list[tuple[str, Kw]], list[str]]:
    """(name, its rich case) of every row, and the names as ids."""
    return [(row.name, row.rich) for row in ROWS], NAMES


def peer_cases(where: Callable[[OptimizerInfo, Kw], bool] = lambda row, kw: True
               ) -> tuple[list[tuple[str, Kw]], list[str]]:
    """(name, our keyword arguments) of each case a torch.optim peer shares where `where`
    holds, and ids."""
    out, out_ids = _listed((row.name, row.peer.cases) for row in ROWS if row.peer)
    kept = [i for i, (name, kw) in enumerate(out) if where(DB[name], kw)]
    return [out[i] for i in kept], [out_ids[i] for i in kept]


def member_lists() -> tuple[list[tuple[str, tuple[Kw, ...]]], list[str]]:
    """(name, members) of every row the batched update runs, and ids."""
    return _listed((row.name, row.batched) for row in ROWS if row.spec.batched)


def _listed(rows) -> tuple[list[tuple[str, Any]], list[str]]:
    out, out_ids = [], []
    for name, items in rows:
        for i, item in enumerate(items):
            out.append((name, item))
            out_ids.append(f"{name}-{i}")
    return out, out_ids
