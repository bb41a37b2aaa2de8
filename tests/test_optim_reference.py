"""Every optimizer and option against the independent NumPy float64 reference, 1000 steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GradientField, max_rel_err
from numpy_reference import REFERENCES

from optimlab.optim import OPTIMIZERS

# One table of optimizers × options; lr chosen so the field's dynamics stay bounded.
CASES = [
    ("sgd", dict(lr=0.05)),
    ("sgd", dict(lr=0.05, weight_decay=0.1)),
    ("sgd", dict(lr=0.02, momentum=0.9)),
    ("sgd", dict(lr=0.02, momentum=0.9, dampening=0.5)),
    ("sgd", dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("sgd", dict(lr=0.05, maximize=True)),
    ("momentum", dict(lr=0.05)),
    ("momentum", dict(lr=0.05, momentum=0.0)),
    ("momentum", dict(lr=0.05, momentum=0.95, nesterov=True)),
    ("momentum", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("rmsprop", dict(lr=1e-2)),
    ("rmsprop", dict(lr=1e-2, alpha=0.99, centered=True)),
    ("rmsprop", dict(lr=1e-3, momentum=0.9)),
    ("rmsprop", dict(lr=1e-3, momentum=0.5, centered=True, weight_decay=0.01)),
    ("rmsprop", dict(lr=1e-2, eps=1e-3, maximize=True)),
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, betas=(0.5, 0.9), eps=1e-6, amsgrad=True)),
    ("adam", dict(lr=1e-2, weight_decay=0.1, maximize=True)),
    ("adamw", dict(lr=1e-2)),
    ("adamw", dict(lr=1e-2, weight_decay=0.3, amsgrad=True)),
    ("adam", dict(lr=1e-2, bias_correction=False)),
    ("adam", dict(lr=1e-2, betas=(0.5, 0.9), amsgrad=True, bias_correction=False)),
    ("adamw", dict(lr=1e-2, weight_decay=0.3, bias_correction=False)),
    ("adagrad", dict(lr=0.1)),
    ("adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-6)),
    ("adagrad", dict(lr=0.05, weight_decay=0.1, maximize=True)),
]
IMPLS = {"reference": dict(foreach=False), "foreach": dict(foreach=True), "default": {}}


def run_ours(name: str, kw: dict, impl: str, field: GradientField, steps: int) -> list[np.ndarray]:
    params = field.torch_params()
    opt = OPTIMIZERS[name](params, **kw, **IMPLS[impl])
    for t in range(1, steps + 1):
        field.set_torch_grads(params, t)
        opt.step()
    assert opt.last_impl and (impl == "default" or opt.last_impl == [impl])
    return [p.detach().numpy().reshape(-1) for p in params]


def run_numpy(name: str, kw: dict, field: GradientField, steps: int) -> list[np.ndarray]:
    out = []
    for i, w in enumerate(field.w0):
        ref = REFERENCES[name](**kw)
        for t in range(1, steps + 1):
            w = ref.step(w, field.grad(i, w, t))
        out.append(w)
    return out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_numpy_reference_1000_steps(name, kw, impl):
    field = GradientField(sign=-1.0 if kw.get("maximize") else 1.0,
                          kind="slope" if name == "rmsprop" else "bowl")
    ours = run_ours(name, kw, impl, field, 1000)
    ref = run_numpy(name, kw, field, 1000)
    for a, b in zip(ours, ref):
        assert np.all(np.isfinite(b))
        assert max_rel_err(a, b) <= 1e-9
    # the run really moved: a broken step that did nothing would fail here
    assert max(float(np.abs(a - w0).max()) for a, w0 in zip(ours, field.w0)) > 1e-2


def test_momentum_with_beta_zero_is_sgd(field):
    a, b = field.torch_params(), field.torch_params()
    sgd = OPTIMIZERS["sgd"](a, lr=0.05)
    mom = OPTIMIZERS["momentum"](b, lr=0.05, momentum=0.0)
    for t in range(1, 201):
        field.set_torch_grads(a, t)
        field.set_torch_grads(b, t)
        sgd.step()
        mom.step()
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_first_step_is_minus_lr_sign_g(name):
    torch.manual_seed(0)
    p = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    w0 = p.detach().clone()
    g = torch.randn(1000, dtype=torch.float64) * torch.logspace(-3, 3, 1000, dtype=torch.float64)
    p.grad = g.clone()
    OPTIMIZERS[name]([p], lr=0.01, weight_decay=0.0).step()
    # v̂ = g and ŝ = g² on step 1, so the step is η g/(|g| + ε) = η sign(g) up to ε/|g|
    deviation = (p.detach() - (w0 - 0.01 * torch.sign(g))).abs()
    bound = 0.01 * 1e-8 / g.abs() + 1e-15  # |η g/(|g|+ε) − η sign g| ≤ η ε/|g|
    assert bool((deviation <= bound).all())
    assert float((p.detach() - w0).abs().min()) > 0.0099  # every coordinate moved ≈ η


def test_ema_momentum_differs_from_heavy_ball_by_the_documented_scale(field):
    """Momentum(η, β) steady state steps η·g; torch heavy ball steps η·g/(1−β)."""
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    q = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    ema = OPTIMIZERS["momentum"]([p], lr=0.1, momentum=0.9)
    hb = OPTIMIZERS["sgd"]([q], lr=0.1 * (1 - 0.9), momentum=0.9)
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    for _ in range(300):  # constant gradient: both velocities converge to their fixed point
        p.grad, q.grad = g.clone(), g.clone()
        ema.step()
        hb.step()
    step_ema = ema.state[p]["momentum_buffer"] * 0.1
    step_hb = hb.state[q]["momentum_buffer"] * 0.1 * (1 - 0.9)
    assert torch.allclose(step_ema, step_hb, rtol=1e-9)
    assert torch.allclose(step_ema, 0.1 * g, rtol=1e-9)
