"""Every optimizer, option and path against the independent NumPy float64 reference: 1000
steps, zero gradients, 0/0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GradientField, max_rel_err
from optim_db import DB, NAMES, PATHS, cases

from optimlab.optim import OPTIMIZERS

# Every case of every row on every path the class has (its default is one of them: the
# fused path where it applies, test_fused.py).
RUNS = [(name, kw, path) for name, kw in cases()[0] for path in DB[name].paths]
RUN_IDS = [f"{i}-{path}" for (name, _), i in zip(*cases()) for path in DB[name].paths]
_numpy_runs: dict[tuple[str, str], list[np.ndarray]] = {}


def run_ours(name: str, kw: dict, path: str, field: GradientField, steps: int,
             grad=None) -> list[np.ndarray]:
    params = field.torch_params()
    opt = OPTIMIZERS[name](params, **kw, **PATHS[path])
    for t in range(1, steps + 1):
        if grad is None:
            field.set_torch_grads(params, t)
        else:
            for i, p in enumerate(params):
                w = p.detach().reshape(-1).numpy()
                p.grad = torch.tensor(grad(i, w, t).reshape(p.shape), dtype=p.dtype)
        opt.step()
    assert set(opt.last_impl) == {path}  # Muon: a group per part
    return [p.detach().numpy().reshape(-1) for p in params]


def numpy_1000_steps(name: str, kw: dict, field: GradientField) -> list[np.ndarray]:
    """The reference's run, once per case for all the paths."""
    key = (name, repr(kw))
    if key not in _numpy_runs:
        _numpy_runs[key] = DB[name].run_reference(kw, field, 1000)
    return _numpy_runs[key]


@pytest.mark.parametrize("name,kw,path", RUNS, ids=RUN_IDS)
def test_matches_numpy_reference_1000_steps(name, kw, path):
    field = DB[name].field(kw)
    ours = run_ours(name, kw, path, field, 1000)
    ref = numpy_1000_steps(name, kw, field)
    for a, b in zip(ours, ref):
        assert np.all(np.isfinite(b))
        assert max_rel_err(a, b) <= 1e-9
    # the run really moved: a broken step that did nothing would fail here
    assert max(float(np.abs(a - w0).max()) for a, w0 in zip(ours, field.w0)) > 1e-2


@pytest.mark.parametrize("name,kw,path", RUNS, ids=RUN_IDS)
def test_zero_gradients_match_the_reference(name, kw, path):
    """Steps 1-3 see g = 0 everywhere (from the zero state: 0/(√0 + ε), v₁ = 0), later
    steps g = 0 on every other element: every state starts and stays at exact zeros there."""
    field = DB[name].field(kw)

    def grad(i: int, w: np.ndarray, t: int) -> np.ndarray:
        g = field.grad(i, w, t)
        return g * 0.0 if t <= 3 else np.where(np.arange(g.size) % 2 == 0, 0.0, g)

    ours = run_ours(name, kw, path, field, 30, grad)
    ref = DB[name].run_reference(kw, field, 30, grad)
    for a, b in zip(ours, ref):
        assert np.all(np.isfinite(b))
        assert max_rel_err(a, b) <= 1e-9


# ε in a denominator (Muon's ε bounds the norm that Newton–Schulz divides by, never 0/0)
EPS_ROWS = [(name, path) for name in NAMES if "eps" in DB[name].spec.hyperparameters
            and DB[name].spec.formula is not None for path in DB[name].paths]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # NumPy's 0/0, as meant
@pytest.mark.parametrize("name,path", EPS_ROWS, ids=[f"{n}-{p}" for n, p in EPS_ROWS])
def test_zero_over_zero_is_nan_as_in_the_reference(name, path):
    """eps=0 with a zero gradient divides 0 by 0: NaN in torch and NumPy, so NaN here (IEEE,
    not a Python exception)."""
    kw = {**DB[name].cases[0], "eps": 0.0}
    p = torch.ones(5, dtype=torch.float64, requires_grad=True)
    g = np.array([0.0, 1.0, 0.0, -2.0, 0.0])
    p.grad = torch.tensor(g)
    opt = OPTIMIZERS[name]([p], **kw, **PATHS[path])
    opt.step()
    assert opt.last_impl == [path]
    expected = DB[name].reference(**kw).step(np.ones(5), g)
    assert int(np.isnan(expected).sum()) == 3
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12, equal_nan=True)


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
