"""Muon: torch.optim.Muon's update on the matrices and torch.optim.AdamW's on the rest, its
Newton–Schulz iteration against the SVD, how it splits parameters, and its batched path
(K members as batched matmuls) against K single runs. The element-wise checks of every
optimizer (NumPy float64 reference, paths, API) run it from tests/optim_db.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import max_rel_err

from optimlab.analysis.records import read_summary
from optimlab.cli import main
from optimlab.optim import Muon
from optimlab.optim.batched import BatchedOptimizer
from optimlab.optim.muon import TorchMuonAdamW, newton_schulz

# matrices of one shape twice (the foreach path stacks them), a tall one, a wide one, and
# the others: a bias, a conv filter
SHAPES = [(6, 4), (6, 4), (9, 3), (3, 7), (5,), (2, 3, 2)]


def params(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in SHAPES]


def set_grads(ps, t):
    """A gradient that depends on the weights and the step, the same for every copy."""
    for i, p in enumerate(ps):
        w = p.detach()
        p.grad = torch.sin(3 * w + 0.1 * t + i) + 0.5 * w


def run(opt, ps, steps):
    for t in range(steps):
        set_grads(ps, t)
        opt.step()
    return ps


TORCH_CASES = [dict(lr=0.02), dict(lr=0.02, nesterov=False, weight_decay=0.0),
               dict(lr=0.05, momentum=0.9, adjust_lr_fn="match_rms_adamw", eps=1e-5),
               dict(lr=0.01, ns_steps=3, ns_coefficients=(2.0, -1.5, 0.5))]


@pytest.mark.parametrize("kw", TORCH_CASES)
def test_equals_torch_muon_on_the_matrices_and_torch_adamw_on_the_rest(kw):
    """float64 weights over 60 steps; ns_dtype="bfloat16" runs Newton–Schulz where torch's
    always does, op for op (the reference path: one matrix at a time, as torch)."""
    ours, theirs = params(), params()
    adamw = dict(adamw_lr=3e-3, adamw_betas=(0.8, 0.99), adamw_eps=1e-7, adamw_weight_decay=0.05)
    opt = Muon(ours, **kw, **adamw, ns_dtype="bfloat16", foreach=False)
    run(opt, ours, 60)
    run(TorchMuonAdamW(theirs, **kw, **adamw), theirs, 60)
    assert opt.last_impl == ["reference", "reference"]
    for a, b in zip(ours, theirs, strict=True):
        assert max_rel_err(a.detach().numpy(), b.detach().numpy()) <= 1e-9


@pytest.mark.parametrize("kw", TORCH_CASES[:2])
def test_foreach_stacks_equal_shapes_and_equals_the_reference_path(kw):
    """The two (6, 4) matrices go through one batched matmul; float64, 100 steps. (In
    bfloat16 a batched matmul rounds apart from two single ones: torch's numbers bit for bit
    are the reference path's.)"""
    a, b = params(), params()
    run(Muon(a, **kw, foreach=False), a, 100)
    run(Muon(b, **kw, foreach=True), b, 100)
    for x, y in zip(a, b, strict=True):
        assert max_rel_err(x.detach().numpy(), y.detach().numpy()) <= 1e-9


@pytest.mark.parametrize("kw", TORCH_CASES[:2])
def test_the_adamw_part_takes_adamws_fused_kernel_and_equals_the_reference_path(kw):
    """By default the matrices take the foreach path and the others AdamW's fused kernel:
    float64, 100 steps, within 1e-9 of the reference path; fused=True refuses the matrices."""
    a, b = params(), params()
    adamw = dict(adamw_lr=3e-3, adamw_betas=(0.8, 0.99), adamw_eps=1e-7,
                 adamw_weight_decay=0.05)
    run(Muon(a, **kw, **adamw, foreach=False), a, 100)
    opt = Muon(b, **kw, **adamw)
    run(opt, b, 100)
    assert opt.last_impl == ["foreach", "fused"]
    for x, y in zip(a, b, strict=True):
        assert max_rel_err(x.detach().numpy(), y.detach().numpy()) <= 1e-9
    refused = Muon(params(), fused=True)
    set_grads(refused.param_groups[0]["params"], 0)
    with pytest.raises(RuntimeError, match=r"Muon\(fused=True\) cannot run here: this param "
                                           "group's update has no fused kernel"):
        refused.step()


def test_float32_runs_torchs_bfloat16_newton_schulz_by_default():
    """A drop-in: at the defaults, float32 weights take torch's steps exactly."""
    ours, theirs = params(torch.float32), params(torch.float32)
    run(Muon(ours, lr=0.02, foreach=False), ours, 30)
    run(TorchMuonAdamW(theirs, lr=0.02), theirs, 30)
    for a, b in zip(ours, theirs, strict=True):
        assert max_rel_err(a.detach().double().numpy(), b.detach().double().numpy()) <= 1e-6


def test_float64_parameters_run_newton_schulz_in_float64():
    """float64 Newton–Schulz parts from torch's bfloat16 one by bfloat16's rounding."""
    ours, theirs = params(), params()
    run(Muon(ours, lr=0.02), ours, 20)
    run(TorchMuonAdamW(theirs, lr=0.02), theirs, 20)
    gap = max_rel_err(ours[0].detach().numpy(), theirs[0].detach().numpy())
    assert 1e-6 < gap < 0.1
    for a, b in zip(ours[4:], theirs[4:]):  # the AdamW part is the same either way
        assert max_rel_err(a.detach().numpy(), b.detach().numpy()) <= 1e-12


@pytest.mark.parametrize("shape", [(5, 5), (8, 3), (3, 8)])
def test_newton_schulz_with_a_converging_quintic_is_the_polar_factor(shape):
    """With coefficients whose fixed point is 1 (Björck & Bowie's quintic) the iteration
    converges to UVᵀ of X = USVᵀ, computed here by NumPy's SVD."""
    rng = np.random.default_rng(1)
    u, _, vt = np.linalg.svd(rng.standard_normal(shape), full_matrices=False)
    x = u @ np.diag(np.linspace(1.0, 3.0, min(shape))) @ vt  # condition number 3
    o = newton_schulz(torch.tensor(x), coefficients=(1.875, -1.25, 0.375), steps=40, eps=1e-7,
                      dtype=None)
    np.testing.assert_allclose(o.numpy(), u @ vt, atol=1e-12)


def test_the_default_quintic_puts_every_singular_value_near_one():
    """Jordan's coefficients trade convergence for speed: S' in about [0.7, 1.2]."""
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.standard_normal((64, 32)))
    s = np.linalg.svd(newton_schulz(x, coefficients=(3.4445, -4.7750, 2.0315), steps=5,
                                    eps=1e-7, dtype=None).numpy(), compute_uv=False)
    assert s.min() > 0.6 and s.max() < 1.25


def test_a_flat_list_splits_by_rank_and_marked_groups_choose():
    ps = params()
    opt = Muon(ps)
    assert [g["use_muon"] for g in opt.param_groups] == [True, False]
    assert [len(g["params"]) for g in opt.param_groups] == [4, 2]
    adamw = opt.param_groups[1]
    assert (adamw["lr"], adamw["betas"], adamw["eps"], adamw["weight_decay"]) == (
        1e-3, (0.9, 0.999), 1e-8, 1e-2)
    ends = Muon(ps, adamw_ends=True)
    assert [p.shape for p in ends.param_groups[0]["params"]] == [(6, 4), (9, 3)]
    marked = Muon([{"params": ps[:2], "use_muon": False, "lr": 0.1}, {"params": ps[2:4]}],
                  adamw_lr=0.5)
    assert [(g["use_muon"], g["lr"]) for g in marked.param_groups] == [(False, 0.1),
                                                                       (True, 1e-3)]


def test_a_scheduler_reaches_both_parts():
    opt = Muon(params(), lr=0.02, adamw_lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    scheduler.step()
    assert [g["lr"] for g in opt.param_groups] == [0.01, 5e-4]


def test_a_muon_group_takes_only_real_matrices():
    with pytest.raises(ValueError, match="parameter 0 of a Muon group has shape \\(5,\\)"):
        Muon([{"params": [torch.zeros(5)], "use_muon": True}])


def test_torch_muon_state_loads_into_ours():
    ours, theirs = params(), params()
    ref = torch.optim.Muon(theirs[:4], lr=0.02)
    run(ref, theirs[:4], 5)
    opt = Muon(ours[:4], lr=0.02, ns_dtype="bfloat16", foreach=False)
    for a, b in zip(ours, theirs):
        a.data.copy_(b.detach())
    opt.load_state_dict(copy.deepcopy(ref.state_dict()))  # not torch's own buffers
    assert opt.param_groups[0]["ns_dtype"] == "bfloat16"  # torch's has none: ours stays
    run(ref, theirs[:4], 5)
    run(opt, ours[:4], 5)
    for a, b in zip(ours[:4], theirs[:4]):
        assert max_rel_err(a.detach().numpy(), b.detach().numpy()) <= 1e-9


def test_hidden_matrices_converge_on_a_least_squares_problem():
    """min ‖XW − Y‖²: Muon's orthogonalized steps with a decaying η reach W*."""
    gen = torch.Generator().manual_seed(0)
    x, w_star = torch.randn(64, 8, generator=gen, dtype=torch.float64), \
        torch.randn(8, 5, generator=gen, dtype=torch.float64)
    w = torch.zeros(8, 5, dtype=torch.float64, requires_grad=True)
    opt = Muon([w], lr=0.05, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.99)
    for _ in range(800):
        opt.zero_grad()
        ((x @ w - x @ w_star) ** 2).mean().backward()
        opt.step()
        sched.step()
    assert float((w.detach() - w_star).norm() / w_star.norm()) < 1e-2


MEMBERS = [dict(lr=0.02), dict(lr=0.01, momentum=0.9, weight_decay=0.0, adamw_lr=3e-3),
           dict(lr=0.05, weight_decay=0.2, adamw_betas=(0.8, 0.99), adamw_eps=1e-6,
                adamw_weight_decay=0.0)]


@pytest.mark.parametrize("shared", [dict(), dict(nesterov=False, adamw_ends=True,
                                                 adjust_lr_fn="match_rms_adamw")])
def test_batched_members_equal_their_single_runs(shared):
    """K members stacked ([K, m, n] matrices: batched matmuls), each with its own η, λ, μ
    and AdamW options, against each run alone; float64, 100 steps."""
    members = [{**m, **shared} for m in MEMBERS]
    k = len(members)
    alone = [params() for _ in members]
    stacked = [torch.stack([ps[i].detach() for ps in alone]) for i in range(len(SHAPES))]
    opt = BatchedOptimizer("muon", stacked, members)
    for t in range(100):
        set_grads(stacked, t)
        opt.step([p.grad for p in stacked])
    assert opt.last_impl == "batched"
    for j in range(k):
        single = run(Muon(alone[j], **members[j]), alone[j], 100)
        for p, q in zip(stacked, single, strict=True):
            assert max_rel_err(p[j].numpy(), q.detach().numpy()) <= 1e-9


def test_a_compacted_batch_steps_its_remaining_members_as_their_single_runs():
    """A rung drops member 0 after 50 steps (`select`): the others go on with their own η,
    λ, μ and AdamW options, not the batch's of before, and end as their runs alone;
    float64, 100 steps."""
    alone = [params() for _ in MEMBERS]
    stacked = [torch.stack([ps[i].detach() for ps in alone]) for i in range(len(SHAPES))]
    opt = BatchedOptimizer("muon", stacked, MEMBERS)
    for t in range(100):
        if t == 50:
            keep = torch.tensor([1, 2])
            stacked = [p[keep] for p in stacked]
            opt.select(keep, stacked)
        set_grads(stacked, t)
        opt.step([p.grad for p in stacked])
    for row, j in enumerate((1, 2)):
        single = run(Muon(alone[j], **MEMBERS[j]), alone[j], 100)
        for p, q in zip(stacked, single, strict=True):
            assert max_rel_err(p[row].numpy(), q.detach().numpy()) <= 1e-9


def test_a_vectorized_sweep_steps_the_matrices_as_matrices(tmp_path):
    """The vectorized executor keeps a model's K copies in one [K, P] tensor: Muon gets
    them back in their shapes (as one flat vector each member would be AdamW's alone), so
    its members equal the runs trained one by one (float64)."""
    argv = ["sweep", "--optimizers", "muon", "--search", "random", "--trials", "2",
            "--model", "mlp", "--steps", "20", "--eval-every", "10", "--dtype", "float64"]
    assert main([*argv, "--out", str(tmp_path / "vec")]) == 0
    assert main([*argv, "--executor", "sequential", "--out", str(tmp_path / "seq")]) == 0
    vectorized, sequential = (read_summary(tmp_path / f / "summary.json")
                              for f in ("vec", "seq"))
    losses = {r["run"]: r["final_train_loss"] for r in sequential}
    assert len(vectorized) == 2
    for r in vectorized:
        assert r["final_train_loss"] == pytest.approx(losses[r["run"]], rel=1e-9)
