"""The Triton kernels compiled ahead of time for a GPU (sm_90), no GPU needed: every kernel
with all its options compiles as the backend launches it, and the unmasked blocks of
aligned tensors load with 16-byte vector instructions (what the roofline needs)."""

from __future__ import annotations

import importlib
import re

import pytest
import torch

import optimlab.optim  # noqa: F401  (the optimizers make their formulas, the kernels' names)
from optimlab.kernels import triton_cuda

pytestmark = pytest.mark.slow  # a few seconds of compiling per kernel


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    """The compiled (not interpreted) kernels, called by the backend on CPU tensors with
    their launch recorded instead of run."""
    from triton.runtime.jit import JITFunction

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if not isinstance(triton_cuda.k.sqrt, JITFunction):
        importlib.reload(triton_cuda.k)
    monkeypatch.setattr(triton_cuda, "DEVICE_TYPE", "cpu")


def launch_of(call):
    """The (kernel, keyword arguments) the backend launches for `call()`, not run."""
    from triton.runtime.jit import JITFunction

    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(JITFunction, "run",
                   lambda kernel, *args, grid, warmup, **kw: seen.append((kernel, kw)))
        call()
    return seen[0]


def compile_ptx(kernel, kw) -> str:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    options = {k: kw.pop(k) for k in ("num_warps", "enable_fp_fusion")}
    signature = {"chunks": "*i64", "table": "*i64", "grad_scale": "*fp32", "found_inf": "*fp32",
                 **dict.fromkeys(kw, "constexpr")}
    source = ASTSource(kernel, signature, kw, {(i,): [["tt.divisibility", 16]] for i in range(4)})
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]


def tensors(dtype, n=5000, offset=0):
    """Four tensors of n elements; `offset` elements into a buffer (offset 1: misaligned)."""
    return [torch.zeros(n + offset, dtype=dtype)[offset:] for _ in range(4)]


def call(name, dtype, offset=0):
    w, g, a, b = tensors(dtype, offset=offset)
    c, d, e, f = tensors(dtype)
    amp = dict(grad_scale=torch.ones(()), found_inf=torch.zeros(()))
    kernels = triton_cuda.KERNELS
    return {
        "sgd": lambda: kernels["sgd"]([w], [g], [None], lr=0.1, momentum=0.9, dampening=0.0,
                                      weight_decay=0.1, nesterov=True, maximize=True, **amp),
        "momentum": lambda: kernels["momentum"]([w], [g], [a], lr=0.1, momentum=0.9,
                                                weight_decay=0.1, nesterov=True, maximize=True),
        "rmsprop": lambda: kernels["rmsprop"]([w], [g], [a], [b], [c], lr=0.1, alpha=0.9,
                                              eps=1e-8, weight_decay=0.1, momentum=0.9,
                                              centered=True, maximize=True, **amp),
        "adam": lambda: kernels["adam"]([w], [g], [a], [b], [c], [3], lr=0.1, beta1=0.9,
                                        beta2=0.99, eps=1e-8, weight_decay=0.1, decoupled=True,
                                        amsgrad=True, maximize=True, **amp),
        "adagrad": lambda: kernels["adagrad"]([w], [g], [a], [3], lr=0.1, lr_decay=0.1,
                                              eps=1e-10, weight_decay=0.1, maximize=True,
                                              **amp),
    }[name]


@pytest.mark.parametrize("name,dtype", [("sgd", torch.float16), ("momentum", torch.float32),
                                        ("rmsprop", torch.bfloat16), ("adam", torch.float32),
                                        ("adagrad", torch.float32)])
def test_every_kernel_compiles_with_all_options_and_vector_loads(name, dtype):
    kernel, kw = launch_of(call(name, dtype))
    assert kw["ALIGNED"] is True
    ptx = compile_ptx(kernel, kw)
    vector_loads = re.findall(r"ld\.global(?:\.\w+)*\.v4\.b32", ptx)
    # parameter, gradient and every state tensor: BLOCK elements over 128 threads, 16 bytes each
    per_tensor = triton_cuda.BLOCK // (32 * triton_cuda.NUM_WARPS) * dtype.itemsize // 16
    tensors_read = {"sgd": 3, "momentum": 3, "rmsprop": 5, "adam": 5, "adagrad": 3}[name]
    assert len(vector_loads) == tensors_read * per_tensor


def test_a_misaligned_tensor_compiles_without_the_alignment_hint():
    kernel, kw = launch_of(call("adam", torch.float32, offset=1))
    assert kw["ALIGNED"] is False
    assert ".v4." not in compile_ptx(kernel, kw)
