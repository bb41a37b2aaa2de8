"""Centered RMSprop where s ≈ m²: every implementation clamps s − m² at 0, none gives NaN.

s − m² is a variance, ≥ 0 in exact arithmetic; where the gradient is constant it decays to
0 and rounding makes it slightly negative, so √(s − m²) needs the clamp (torch.optim.RMSprop
has none and gives NaN there).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from optim_db import DB, PATHS

from optimlab.optim import RMSprop
from optimlab.optim.batched import BatchedOptimizer
from optimlab.optim.diagnostics import effective_step_size

IMPLS = {path: PATHS[path] for path in DB["rmsprop"].paths}
DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("impl", IMPLS)
def test_constant_gradient_for_1000_steps_gives_no_nan(impl, dtype):
    """A constant gradient drives s − m² to 0 from above: rounding crosses below 0."""
    n = 2048
    g = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=dtype) * 1e3
    w = torch.zeros(n, dtype=dtype, requires_grad=True)
    opt = RMSprop([w], lr=1e-3, alpha=0.9, centered=True, **IMPLS[impl])
    crossed = 0
    for _ in range(1000):
        w.grad = g.clone()
        opt.step()
        st = opt.state[w]
        crossed += int((st["square_avg"] - st["grad_avg"] ** 2 < 0).sum())
    assert opt.last_impl == [impl]
    assert crossed > 0  # the case really happens here
    assert not torch.isnan(w).any()
    assert torch.isfinite(effective_step_size(opt, w)).all()


def _expected(w0: float, g: float, s0: float, m0: float, lr: float, alpha: float,
              eps: float) -> float:
    """One step of the NumPy reference from the state (s0, m0)."""
    ref = DB["rmsprop"].reference(lr, alpha=alpha, eps=eps, centered=True)
    ref.s, ref.m = s0, m0
    return float(ref.step(np.float64(w0), np.float64(g)))


# A state with s < m² (what rounding leaves behind, exaggerated so every dtype sees it): after
# one more step s − m² = 0.2000005 − 0.5005² < 0, so the clamp gives √0 and the step is η g/ε.
W0, G, S0, M0, LR, ALPHA, EPS = 0.5, 1e-3, 0.4, 1.0, 0.1, 0.5, 1e-3


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
@pytest.mark.parametrize("impl", IMPLS)
def test_negative_s_minus_m2_is_clamped_in_every_path(impl, momentum, dtype):
    w = torch.full((3, 5), W0, dtype=dtype, requires_grad=True)
    opt = RMSprop([w], lr=LR, alpha=ALPHA, eps=EPS, centered=True, momentum=momentum,
                  **IMPLS[impl])
    w.grad = torch.zeros_like(w)
    opt.step()  # creates the state; a zero gradient leaves w where it is
    opt.state[w]["square_avg"].fill_(S0)
    opt.state[w]["grad_avg"].fill_(M0)
    w.grad = torch.full_like(w, G)
    opt.step()
    assert opt.last_impl == [impl]
    expected = _expected(W0, G, S0, M0, LR, ALPHA, EPS)
    assert expected == pytest.approx(W0 - LR * G / EPS)  # the reference clamps too
    rtol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(w.detach(), torch.full_like(w, expected), rtol=rtol, atol=0)
    # the diagnostics read the same state: η/(√max(s − m², 0) + ε) = η/ε
    torch.testing.assert_close(effective_step_size(opt, w), torch.full_like(w, LR / EPS),
                               rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_negative_s_minus_m2_is_clamped_in_the_batched_sweep(dtype):
    params = [torch.full((2, 3, 5), W0, dtype=dtype)]
    members = [dict(lr=LR, alpha=ALPHA, eps=EPS, centered=True),
               dict(lr=LR / 2, alpha=ALPHA, eps=EPS, centered=True)]
    opt = BatchedOptimizer("rmsprop", params, members)
    opt.step([torch.zeros_like(params[0])])
    opt.state["s"][0].fill_(S0)
    opt.state["m"][0].fill_(M0)
    opt.step([torch.full_like(params[0], G)])
    rtol = 1e-12 if dtype == torch.float64 else 1e-6
    for k, kw in enumerate(members):
        expected = _expected(W0, G, S0, M0, kw["lr"], ALPHA, EPS)
        torch.testing.assert_close(params[0][k], torch.full_like(params[0][k], expected),
                                   rtol=rtol, atol=0)


def test_torch_optim_state_gets_the_clamp_in_the_diagnostics():
    """effective_step_size reads torch.optim.RMSprop's state too (the same names)."""
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.RMSprop([w], lr=LR, alpha=ALPHA, eps=EPS, centered=True)
    w.grad = torch.ones(4, dtype=torch.float64)
    opt.step()
    opt.state[w]["square_avg"].fill_(S0 / 2)
    opt.state[w]["grad_avg"].fill_(M0)
    torch.testing.assert_close(effective_step_size(opt, w), torch.full_like(w, LR / EPS))
