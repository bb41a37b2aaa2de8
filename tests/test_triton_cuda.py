"""The Triton kernels compiled, on a CUDA device: the cases of test_triton.py (there run
by the interpreter on CPU tensors) against the same float64 reference, and the default
dispatch and GradScaler on real CUDA tensors. Skipped where torch sees no GPU."""

from __future__ import annotations

import pytest
import torch
from test_triton import (
    CASES,
    IDS,
    LOW,
    assert_close,
    fused,
    gradients,
    numpy_reference,
    rounded_reference,
)

from optimlab.kernels import triton_cuda
from optimlab.optim import OPTIMIZERS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64: the small cases' tensors get unmasked blocks and masked tails."""
    monkeypatch.setattr(triton_cuda, "BLOCK", 64)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_compiled_kernels_match_the_float64_reference(name, kw, small_blocks):
    grads = gradients(torch.float32)
    ours, _ = fused(name, kw, torch.float32, grads, device="cuda")
    ref, _ = rounded_reference(name, kw, torch.float32, grads)
    for step_ours, step_ref in zip(ours, ref):
        assert_close(step_ours, step_ref, torch.float32)
    assert_close(ours[-1], numpy_reference(name, kw, grads), torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name,kw", LOW, ids=[n for n, _ in LOW])
def test_compiled_low_precision_storage(name, kw, dtype, small_blocks):
    grads = gradients(dtype, steps=2)
    ours, _ = fused(name, kw, dtype, grads, device="cuda")
    ref, _ = rounded_reference(name, kw, dtype, grads)
    for step_ours, step_ref in zip(ours, ref):
        assert_close(step_ours, step_ref, dtype)


def test_default_takes_triton_on_cuda_and_grad_scaler_works():
    """At the shipped BLOCK: 3010 parameters in two tensors."""
    torch.manual_seed(0)
    model = torch.nn.Linear(300, 10).cuda()
    opt = OPTIMIZERS["adam"](model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10)
    x = torch.randn(64, 300, device="cuda")
    for t in range(3):
        loss = model(x).square().mean() * (float("inf") if t == 1 else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
    assert opt.last_impl == ["fused"] and opt.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
