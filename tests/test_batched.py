"""Batched updates (K members stacked) against each member run alone with the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GradientField, max_rel_err

from optimlab.optim import OPTIMIZERS, SPECS
from optimlab.optim.batched import BatchedOptimizer

# One table: an optimizer and its K members' keyword arguments (mixing zero and non-zero
# terms, so a skipped term in one member cannot leak into another).
CASES = [
    ("sgd", [dict(lr=0.05), dict(lr=0.02, weight_decay=0.1), dict(lr=0.01)]),
    ("sgd", [dict(lr=0.02, momentum=0.9), dict(lr=0.05), dict(lr=0.01, momentum=0.5,
                                                                weight_decay=0.01)]),
    ("momentum", [dict(lr=0.05), dict(lr=0.1, momentum=0.0), dict(lr=0.02, momentum=0.95)]),
    ("momentum", [dict(lr=0.05, weight_decay=0.1), dict(lr=0.03, momentum=0.5)]),
    ("rmsprop", [dict(lr=1e-2), dict(lr=1e-3, alpha=0.99), dict(lr=3e-3, eps=1e-3)]),
    ("rmsprop", [dict(lr=1e-2, weight_decay=0.01), dict(lr=1e-2, alpha=0.5)]),
    ("adam", [dict(lr=1e-2), dict(lr=1e-3, betas=(0.5, 0.9)), dict(lr=3e-2, eps=1e-4)]),
    ("adam", [dict(lr=1e-2, weight_decay=0.1), dict(lr=1e-2, betas=(0.0, 0.99))]),
    ("adamw", [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.3), dict(lr=1e-3, weight_decay=0)]),
    ("rmsprop", [dict(lr=1e-2, centered=True), dict(lr=1e-3, alpha=0.99, centered=True)]),
    ("adam", [dict(lr=1e-2, bias_correction=False), dict(lr=1e-3, betas=(0.5, 0.99),
                                                         bias_correction=False)]),
    ("adagrad", [dict(lr=0.1), dict(lr=0.05, lr_decay=0.01, weight_decay=0.1),
                 dict(lr=0.2, eps=1e-3)]),
    ("adagrad", [dict(lr=0.1, initial_accumulator_value=0.5),
                 dict(lr=0.05, initial_accumulator_value=0.5, lr_decay=0.1)]),
]
STEPS = 60


def field_for(name: str) -> GradientField:
    # RMSprop near a minimum is chaotic (see GradientField): use the field without one.
    return GradientField(kind="slope" if name == "rmsprop" else "bowl")


def run_alone(name: str, kw: dict, field: GradientField, steps: int,
              dtype: torch.dtype = torch.float64) -> list[np.ndarray]:
    """The oracle: the optimizer class on one member, on its reference path."""
    params = field.torch_params(dtype)
    opt = OPTIMIZERS[name](params, **kw, foreach=False)
    for t in range(1, steps + 1):
        field.set_torch_grads(params, t)
        opt.step()
    assert opt.last_impl == ["reference"]
    return [p.detach().numpy().reshape(-1) for p in params]


def stacked_grads(field: GradientField, params: list[torch.Tensor], t: int) -> list[torch.Tensor]:
    """Member k's gradient at its own parameters, stacked like the parameters."""
    out = []
    for i, p in enumerate(params):
        rows = [field.grad(i, p[k].reshape(-1).numpy(), t) for k in range(p.shape[0])]
        out.append(torch.tensor(np.stack(rows).reshape(p.shape), dtype=p.dtype))
    return out


def run_batched(name: str, members: list[dict], field: GradientField, steps: int,
                drop_at: int | None = None) -> tuple[list[torch.Tensor], list[int]]:
    """All members at once; at step `drop_at` member 0 is dropped (as a diverged one is)."""
    k = len(members)
    params = [p.detach().unsqueeze(0).repeat(k, *([1] * p.dim())) for p in field.torch_params()]
    opt = BatchedOptimizer(name, params, members)
    alive = list(range(k))
    for t in range(1, steps + 1):
        if t == drop_at:
            keep = torch.arange(1, len(alive))
            params = [p[keep] for p in params]
            opt.select(keep, params)
            alive = alive[1:]
        opt.step(stacked_grads(field, params, t))
    return params, alive


@pytest.mark.parametrize("name,members", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_each_member_equals_its_reference_run(name, members):
    field = field_for(name)
    params, alive = run_batched(name, members, field, STEPS)
    for k in alive:
        ref = run_alone(name, members[k], field, STEPS)
        for p, r in zip(params, ref, strict=True):
            assert max_rel_err(p[k].reshape(-1).numpy(), r) <= 1e-12, (name, members[k])


@pytest.mark.parametrize("name,members", [CASES[1], CASES[4], CASES[6]], ids=["sgd", "rms", "adam"])
def test_dropping_a_member_leaves_the_others_unchanged(name, members):
    field = field_for(name)
    params, alive = run_batched(name, members, field, STEPS, drop_at=STEPS // 2)
    assert alive == list(range(1, len(members)))
    for row, k in enumerate(alive):
        ref = run_alone(name, members[k], field, STEPS)
        for p, r in zip(params, ref, strict=True):
            assert max_rel_err(p[row].reshape(-1).numpy(), r) <= 1e-12


def test_float32_members_track_their_float32_runs():
    field = field_for("adam")
    members = CASES[6][1]
    params = [p.detach().float().unsqueeze(0).repeat(3, *([1] * p.dim()))
              for p in field.torch_params()]
    opt = BatchedOptimizer("adam", params, members)
    for t in range(1, 21):
        opt.step(stacked_grads(field, params, t))
    for k, kw in enumerate(members):
        ref = run_alone("adam", kw, field, 20, torch.float32)
        for p, r in zip(params, ref, strict=True):
            # float32 rounding only: both sides form 1−β in float64
            assert max_rel_err(p[k].reshape(-1).numpy(), r) <= 1e-5


def test_spec_defaults_are_the_lecture_defaults():
    assert SPECS["adam"].defaults["betas"] == (0.9, 0.999)
    assert SPECS["momentum"].defaults["momentum"] == 0.9
    assert SPECS["rmsprop"].defaults["alpha"] == 0.9
    assert SPECS["sgd"].defaults["lr"] == 1e-3


@pytest.mark.parametrize("name,kw,match", [
    ("momentum", dict(lr=0.1, nesterov=True), "nesterov"),
    ("rmsprop", dict(momentum=0.9), "momentum"),
    ("adam", dict(amsgrad=True), "amsgrad"),
    ("sgd", dict(lr=-1.0), "lr"),
    ("adam", dict(betas=(1.5, 0.9)), "betas"),
    ("lion", dict(lr=0.1), "optimizer"),
    ("adagrad", dict(lr=0.1, maximize=True), "maximize"),
])
def test_bad_members_are_refused_with_the_name(name, kw, match):
    with pytest.raises(ValueError, match=match):
        BatchedOptimizer(name, [torch.zeros(1, 3)], [kw])


def test_a_shared_option_must_be_the_same_for_every_member():
    with pytest.raises(ValueError, match="centered.*one value shared"):
        BatchedOptimizer("rmsprop", [torch.zeros(2, 3)], [dict(centered=True), dict()])


def test_params_must_be_stacked_over_the_members():
    with pytest.raises(ValueError, match="leading dim of K = 2"):
        BatchedOptimizer("sgd", [torch.zeros(3, 4)], [dict(lr=0.1), dict(lr=0.2)])
