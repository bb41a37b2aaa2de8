"""Batched updates (K members stacked) against each member run alone with the reference
(and the NumPy one), through both paths: the fused batched kernel (the default on CPU) and
the torch ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GradientField, max_rel_err
from optim_db import DB, member_lists

from optimlab.optim import OPTIMIZERS, SPECS
from optimlab.optim.batched import BatchedOptimizer

# Every row's lists of members (optim_db.py); FUSED: those with a fused kernel.
CASES, IDS = member_lists()
FUSED, FUSED_IDS = member_lists(lambda row: bool(row.spec.kernel))
STEPS = 60
# `BatchedOptimizer(fused=...)` and the path its steps then take (`last_impl`)
PATHS = {"fused": (None, "fused"), "torch-ops": (False, "batched")}
# (name, members, path): the fused path where the row has a kernel
WITH_PATHS = [(*case, path) for case in CASES for path in PATHS
              if path != "fused" or case in FUSED]
WITH_PATHS_IDS = [f"{i}-{path}" for case, i in zip(CASES, IDS) for path in PATHS
                  if path != "fused" or case in FUSED]


def field_for(name: str, members: tuple[dict, ...]) -> GradientField:
    """The row's field (RMSprop near a minimum is chaotic: the field without one)."""
    chaotic = [DB[name].chaotic(kw) for kw in members]
    assert len(set(chaotic)) == 1, "one field for all the members"
    return DB[name].field(members[0])


def run_alone(name: str, kw: dict, field: GradientField, steps: int,
              dtype: torch.dtype = torch.float64) -> list[np.ndarray]:
    """The oracle: the optimizer class on one member, on its reference path."""
    params = field.torch_params(dtype)
    opt = OPTIMIZERS[name](params, **kw, foreach=False)
    for t in range(1, steps + 1):
        field.set_torch_grads(params, t)
        opt.step()
    assert set(opt.last_impl) == {"reference"}  # Muon: a group per part
    return [p.detach().numpy().reshape(-1) for p in params]


def stacked_grads(field: GradientField, params: list[torch.Tensor], t: int) -> list[torch.Tensor]:
    """Member k's gradient at its own parameters, stacked like the parameters."""
    out = []
    for i, p in enumerate(params):
        rows = [field.grad(i, p[k].reshape(-1).numpy(), t) for k in range(p.shape[0])]
        out.append(torch.tensor(np.stack(rows).reshape(p.shape), dtype=p.dtype))
    return out


def run_batched(name: str, members: list[dict], field: GradientField, steps: int,
                drop_at: int | None = None, path: str = "fused",
                dtype: torch.dtype = torch.float64) -> tuple[list[torch.Tensor], list[int]]:
    """All members at once; at step `drop_at` member 0 is dropped (as a diverged one is)."""
    k = len(members)
    fused, impl = PATHS[path]
    params = [p.detach().unsqueeze(0).repeat(k, *([1] * p.dim()))
              for p in field.torch_params(dtype)]
    opt = BatchedOptimizer(name, params, members, fused=fused)
    alive = list(range(k))
    for t in range(1, steps + 1):
        if t == drop_at:
            keep = torch.arange(1, len(alive))
            params = [p[keep] for p in params]
            opt.select(keep, params)
            alive = alive[1:]
        opt.step(stacked_grads(field, params, t))
        assert opt.last_impl == impl
    return params, alive


@pytest.mark.parametrize("name,members,path", WITH_PATHS, ids=WITH_PATHS_IDS)
def test_each_member_equals_its_reference_run(name, members, path):
    field = field_for(name, members)
    params, alive = run_batched(name, members, field, STEPS, path=path)
    for k in alive:
        ref = run_alone(name, members[k], field, STEPS)
        numpy = DB[name].run_reference(members[k], field, STEPS)
        for p, r, n in zip(params, ref, numpy, strict=True):
            assert max_rel_err(p[k].reshape(-1).numpy(), r) <= 1e-12, (name, members[k])
            assert max_rel_err(p[k].reshape(-1).numpy(), n) <= 1e-9, (name, members[k])


@pytest.mark.parametrize("name,members,path", WITH_PATHS, ids=WITH_PATHS_IDS)
def test_dropping_a_member_leaves_the_others_unchanged(name, members, path):
    field = field_for(name, members)
    params, alive = run_batched(name, members, field, STEPS, drop_at=STEPS // 2, path=path)
    assert alive == list(range(1, len(members)))
    for row, k in enumerate(alive):
        ref = run_alone(name, members[k], field, STEPS)
        for p, r in zip(params, ref, strict=True):
            assert max_rel_err(p[row].reshape(-1).numpy(), r) <= 1e-12


@pytest.mark.parametrize("name,members,path", WITH_PATHS, ids=WITH_PATHS_IDS)
def test_float32_members_track_their_float32_runs(name, members, path):
    field = field_for(name, members)
    params, alive = run_batched(name, members, field, 20, drop_at=10, path=path,
                                dtype=torch.float32)
    for row, k in enumerate(alive):
        ref = run_alone(name, members[k], field, 20, torch.float32)
        for p, r in zip(params, ref, strict=True):
            # float32 rounding only: both sides form 1−β in float64
            assert max_rel_err(p[row].reshape(-1).numpy(), r) <= 1e-5, (name, members[k])


@pytest.mark.parametrize("name,members", FUSED, ids=FUSED_IDS)
def test_steps_may_switch_between_the_paths_and_keep_one_state(name, members):
    """A step whose gradients the kernel cannot take (not contiguous) runs the torch ops on
    the state the kernel left, and the kernel carries on from theirs."""
    field = field_for(name, members)
    k = len(members)
    params = [p.detach().unsqueeze(0).repeat(k, *([1] * p.dim())) for p in field.torch_params()]
    opt = BatchedOptimizer(name, params, members)
    for t in range(1, STEPS + 1):
        grads = stacked_grads(field, params, t)
        if t % 3 == 1:  # step 1 too: the torch ops create the state the kernel then uses
            grads = [g.transpose(0, -1).contiguous().transpose(0, -1) if g.dim() > 1
                     else g.repeat_interleave(2)[::2] for g in grads]
            assert not all(g.is_contiguous() for g in grads)
        opt.step(grads)
        assert opt.last_impl == ("batched" if t % 3 == 1 else "fused")
    for j, kw in enumerate(members):
        ref = run_alone(name, kw, field, STEPS)
        for p, r in zip(params, ref, strict=True):
            assert max_rel_err(p[j].reshape(-1).numpy(), r) <= 1e-12, (name, kw)


def test_fused_true_says_why_the_kernel_cannot_run():
    params = [torch.zeros(2, 3, dtype=torch.float16)]
    opt = BatchedOptimizer("adam", params, [dict(lr=0.1), dict(lr=0.2)], fused=True)
    with pytest.raises(RuntimeError, match="fused=True.*float16"):
        opt.step([torch.ones(2, 3, dtype=torch.float16)])
    opt = BatchedOptimizer("adam", params, [dict(lr=0.1), dict(lr=0.2)])
    opt.step([torch.ones(2, 3, dtype=torch.float16)])  # the default falls back to the torch ops
    assert opt.last_impl == "batched"
    assert params[0][0, 0].item() == pytest.approx(-0.1, rel=1e-3)
    opt = BatchedOptimizer("sgd", [torch.zeros(2, 3)], [dict(lr=0.1), dict(lr=0.2)], fused=True)
    with pytest.raises(RuntimeError, match=r"gradient 0 is torch.float64 of shape \(2, 3\)"):
        opt.step([torch.ones(2, 3, dtype=torch.float64)])


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
    ("adafactor", dict(lr=0.1), "optimizer"),
    ("adagrad", dict(lr=0.1, maximize=True), "maximize"),
    *[(name, dict(maximize=True), "maximize") for name in SPECS if SPECS[name].batched],
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


@pytest.mark.parametrize("name,members", FUSED, ids=FUSED_IDS)
def test_members_spanning_many_chunks_and_threads_equal_their_reference_runs(
        name, members, monkeypatch):
    """Rows of 40,000 and 7 elements (several kernel chunks, and a short one), cut into
    shares for 3 threads: each member still equals its reference run."""
    from optimlab.kernels import _numba_kernels, numba_cpu

    monkeypatch.setattr(numba_cpu, "MIN_PER_THREAD", 1000)
    monkeypatch.setattr(numba_cpu.torch, "get_num_threads", lambda: 3)
    assert 40_000 > 2 * _numba_kernels.CHUNK
    k, gen = len(members), torch.Generator().manual_seed(0)
    params = [torch.randn(k, 200, 200, generator=gen, dtype=torch.float64),
              torch.randn(k, 7, generator=gen, dtype=torch.float64)]
    alone = [[p[j].clone().requires_grad_() for p in params] for j in range(k)]
    refs = [OPTIMIZERS[name](ps, **kw, foreach=False) for ps, kw in zip(alone, members)]
    opt = BatchedOptimizer(name, params, members)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        opt.step(grads)
        assert opt.last_impl == "fused"
        for j, ref in enumerate(refs):
            for p, g in zip(alone[j], grads):
                p.grad = g[j].clone()
            ref.step()
    for j, kw in enumerate(members):
        for p, r in zip(params, alone[j], strict=True):
            assert max_rel_err(p[j].numpy(), r.detach().numpy()) <= 1e-12, (name, kw)
