"""The fused CPU kernels against the reference updates; dispatch, memory and the disk cache."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import GradientField, max_rel_err
from optim_db import DB, NAMES, rich
from torch.optim.optimizer import register_optimizer_step_pre_hook

from optimlab import kernels
from optimlab.bench import measure
from optimlab.kernels import _numba_kernels, numba_cpu
from optimlab.optim import OPTIMIZERS

# One case per kernel, many options on: float32 runs the kernels' other compilation (float64
# runs every case against the NumPy reference in test_optim_reference.py).
FUSED = [(name, kw) for name, kw in rich()[0] if DB[name].spec.kernel]
FUSED_IDS = [name for name, _ in FUSED]


class TorchField:
    """GradientField's formulas evaluated in torch float64: the same gradients, 4x cheaper."""

    def __init__(self, field: GradientField):
        self.f = field
        self.A = [torch.from_numpy(a) for a in field.A]
        self.phase = [torch.from_numpy(ph) for ph in field.phase]
        self.c = [torch.from_numpy(c) for c in field.c]

    def grad(self, i: int, w: torch.Tensor, t: int) -> torch.Tensor:
        if self.f.kind == "slope":
            g = self.c[i] + 0.5 * torch.sin(0.3 * t + self.phase[i]) \
                + 0.1 * torch.tanh(self.A[i] @ w)
        else:
            g = self.A[i] @ w + 0.3 * torch.sin(w) + 0.05 * torch.cos(0.01 * t + self.phase[i])
        return self.f.sign * g

    def set_grads(self, params: list[torch.Tensor], t: int) -> None:
        for i, p in enumerate(params):
            w = p.detach().reshape(-1).double()
            p.grad = self.grad(i, w, t).reshape(p.shape).to(p.dtype)


def run(name: str, kw: dict, impl: dict, field: GradientField, dtype: torch.dtype,
        steps: int) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    params = field.torch_params(dtype)
    opt = OPTIMIZERS[name](params, **kw, **impl)
    grads = TorchField(field)
    for t in range(1, steps + 1):
        grads.set_grads(params, t)
        opt.step()
    return params, opt


def flat(params: list[torch.Tensor]) -> np.ndarray:
    return np.concatenate([p.detach().double().numpy().reshape(-1) for p in params])


@pytest.mark.parametrize("name,kw", FUSED, ids=FUSED_IDS)
def test_float32_fused_matches_the_float32_reference_1000_steps(name, kw):
    field = DB[name].field(kw)
    fused, opt = run(name, kw, dict(fused=True), field, torch.float32, 1000)
    ref, _ = run(name, kw, dict(foreach=False), field, torch.float32, 1000)
    assert opt.last_impl == ["fused"]
    assert max_rel_err(flat(fused), flat(ref)) <= 2e-4  # float32 rounding
    assert np.abs(flat(fused) - np.concatenate(field.w0)).max() > 1e-2  # it really moved


@pytest.mark.parametrize("name,kw", FUSED, ids=FUSED_IDS)
def test_fused_state_matches_reference_state(name, kw):
    """Not only the weights: every state tensor (torch's names) agrees."""
    field = DB[name].field(kw)
    fused, a = run(name, kw, dict(fused=True), field, torch.float64, 50)
    ref, b = run(name, kw, dict(foreach=False), field, torch.float64, 50)
    for p, q in zip(fused, ref):
        assert a.state[p].keys() == b.state[q].keys() and a.state[p]
        for key in a.state[p]:
            torch.testing.assert_close(a.state[p][key], b.state[q][key], rtol=1e-12, atol=0)


# Sizes around the chunking: empty, tiny, exactly one chunk, several chunks plus a tail.
CHUNK = _numba_kernels.CHUNK
SIZES = [0, 7, CHUNK, 3 * CHUNK + 5]


def random_steps(name, kw, dtype, fused, steps=3, seed=1):
    """A few steps on tensors of SIZES with random gradients (elementwise updates need no field)."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen, dtype=dtype).requires_grad_() for n in SIZES]
    opt = OPTIMIZERS[name](params, **kw, **(dict(fused=True) if fused else dict(foreach=False)))
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
        opt.step()
    return params, opt


@pytest.mark.parametrize("name,kw", FUSED, ids=FUSED_IDS)
def test_chunks_and_threads_cover_every_element(name, kw, monkeypatch):
    # a low threshold and 3 threads: several shares, the pool used, uneven chunk counts
    monkeypatch.setattr(numba_cpu, "MIN_PER_THREAD", 1000)
    monkeypatch.setattr(numba_cpu.torch, "get_num_threads", lambda: 3)
    fused, opt = random_steps(name, kw, torch.float64, fused=True)
    ref, _ = random_steps(name, kw, torch.float64, fused=False)
    assert opt.last_impl == ["fused"]
    for p, q in zip(fused, ref):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_parameters_are_two_reals(dtype):
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    gen = torch.Generator().manual_seed(3)
    init = [torch.randn(s, generator=gen, dtype=dtype) for s in [(4, 3), (CHUNK + 1,)]]
    grads = [[torch.randn(s, generator=gen, dtype=dtype) for s in [(4, 3), (CHUNK + 1,)]]
             for _ in range(5)]
    out = {}
    for impl in (dict(fused=True), dict(foreach=False)):
        params = [w.clone().requires_grad_() for w in init]
        opt = OPTIMIZERS["adam"](params, lr=0.1, amsgrad=True, **impl)
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()
        out[opt.last_impl[0]] = params
        assert opt.state[params[0]]["exp_avg"].dtype == dtype
    for p, q in zip(out["fused"], out["reference"]):
        torch.testing.assert_close(torch.view_as_real(p), torch.view_as_real(q),
                                   rtol=1e-5 if real == torch.float32 else 1e-12, atol=1e-7)


def test_sgd_creates_momentum_buffers_on_the_first_step_even_midway():
    """v₁ = g for every tensor on its own first step, also when others are past theirs."""
    gen = torch.Generator().manual_seed(4)
    runs = {}
    for impl in (dict(fused=True), dict(foreach=False)):
        gen.manual_seed(4)
        params = [torch.randn(50, generator=gen, dtype=torch.float64).requires_grad_()
                  for _ in range(2)]
        opt = OPTIMIZERS["sgd"](params, lr=0.1, momentum=0.9, dampening=0.5)
        opt.param_groups[0].update(impl)
        params[0].grad = torch.randn(50, generator=gen, dtype=torch.float64)
        opt.step()  # only the first tensor has a gradient yet
        first_grad = params[0].grad.clone()
        assert torch.equal(opt.state[params[0]]["momentum_buffer"], first_grad)  # v₁ = g
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(50, generator=gen, dtype=torch.float64)
            opt.step()
        runs[opt.last_impl[0]] = (params, [opt.state[p]["momentum_buffer"] for p in params])
    for a, b in zip(sum(runs["fused"], []), sum(runs["reference"], [])):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name,kw", FUSED, ids=FUSED_IDS)
def test_nan_and_inf_propagate_as_in_the_reference(name, kw):
    out = []
    for impl in (dict(fused=True), dict(foreach=False)):
        params = [torch.linspace(-1, 1, 8, dtype=torch.float32).requires_grad_()]
        opt = OPTIMIZERS[name](params, **kw, **impl)
        for t in range(3):
            g = torch.full((8,), 0.5)
            g[1], g[2], g[3] = (float("nan"), float("inf"), -float("inf")) if t == 1 else (0, 0, 0)
            params[0].grad = g
            opt.step()
        state = [v for v in opt.state[params[0]].values() if v.is_floating_point()]
        out.append(torch.cat([params[0].detach(), *(v.reshape(-1) for v in state)]))
    # the case is not vacuous: NaN or Inf reached the weights or the state (a step of
    # sign(·) keeps the weights finite: sign(NaN) is 0)
    assert not bool(torch.isfinite(out[1]).all())
    torch.testing.assert_close(out[0], out[1], equal_nan=True, rtol=1e-6, atol=1e-7)


def one_step(params, **kw):
    for p in params:
        p.grad = torch.ones_like(p)
    opt = OPTIMIZERS["adam"](params, **kw)
    opt.step()
    return opt


# (what makes the fused kernel inapplicable, the params, words the reason must contain)
UNFUSABLE = [
    ("bf16", lambda: [torch.zeros(4, dtype=torch.bfloat16, requires_grad=True)], "bfloat16"),
    ("non-contiguous", lambda: [torch.zeros(4, 3).t().requires_grad_()], "not contiguous"),
    ("mixed dtypes", lambda: [torch.zeros(2, requires_grad=True),
                              torch.zeros(2, dtype=torch.float64, requires_grad=True)],
     "mixes dtypes"),
]


@pytest.mark.parametrize("make,words", [u[1:] for u in UNFUSABLE], ids=[u[0] for u in UNFUSABLE])
def test_default_falls_back_to_foreach_and_fused_true_says_why(make, words):
    assert one_step(make()).last_impl == ["foreach"]
    with pytest.raises(RuntimeError, match=words):
        one_step(make(), fused=True)


def test_default_takes_fused_on_cpu_and_each_group_reports_its_path():
    fast = [torch.zeros(4, requires_grad=True)]
    slow = [torch.zeros(4, dtype=torch.float16, requires_grad=True)]
    for p in fast + slow:
        p.grad = torch.ones_like(p)
    opt = OPTIMIZERS["adam"]([{"params": fast}, {"params": slow}, {"params": fast[:0]}])
    opt.step()
    assert opt.last_impl == ["fused", "foreach", "none"]


def test_kept_layout_follows_changes_of_the_group_between_steps():
    """The fused path reuses what it checked about a group; every change below must be
    seen: each step agrees with w − ηg computed here (to float64 rounding: the kernel may
    fuse the multiply-add), and reports the path it took."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
              for _ in range(3)]
    opt = OPTIMIZERS["sgd"](params, lr=0.1)
    assert opt.state_dict()["state"] == {}  # as torch.optim.SGD: no state without momentum

    def step_and_check(path: list[str]) -> None:
        for g in opt.param_groups:
            for p in g["params"]:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        expected = [[p.detach() - 0.1 * p.grad for p in g["params"]] for g in opt.param_groups]
        opt.step()
        assert opt.last_impl == path
        for g, want in zip(opt.param_groups, expected):
            for p, w in zip(g["params"], want):
                torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-15)

    step_and_check(["fused"])
    step_and_check(["fused"])  # the layout kept from the step before
    params[1].data = params[1].data.t()  # same storage and address, no longer contiguous
    step_and_check(["foreach"])
    params[1].data = params[1].data.t().clone()  # contiguous again, at a new address
    step_and_check(["fused"])
    params[2].data = torch.randn(7, generator=gen, dtype=torch.float64)  # another size
    step_and_check(["fused"])
    params.append(torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True))
    opt.param_groups[0]["params"].append(params[-1])  # the group's list itself grows
    step_and_check(["fused"])
    params[0].grad = torch.randn(4, 5, generator=gen, dtype=torch.float64).t()
    expected = params[0].detach() - 0.1 * params[0].grad
    opt.step()
    assert opt.last_impl == ["foreach"]
    torch.testing.assert_close(params[0].detach(), expected, rtol=1e-12, atol=1e-15)
    opt.add_param_group({"params": [torch.randn(3, generator=gen, requires_grad=True)]})
    step_and_check(["fused", "fused"])


def test_non_contiguous_gradient_is_a_reason():
    p = torch.zeros(4, 3, requires_grad=True)
    p.grad = torch.ones(3, 4).t()
    assert "gradient of parameter 0" in kernels.fused_layout("adam", [p], [p.grad])


def test_other_devices_have_no_backend_yet():
    p = torch.zeros(2, device="meta")
    reason = kernels.fused_layout("sgd", [p], [p])
    assert "'meta'" in reason and "cpu" in reason


def test_unknown_kind():
    p = torch.zeros(2)
    assert "known: sgd" in kernels.fused_layout("adafactor", [p], [p])
    with pytest.raises(ValueError, match="'adafactor'"):
        kernels.get("adafactor")


def test_state_that_does_not_fit_the_kernel_is_refused_not_written():
    p = torch.zeros(4, 3, requires_grad=True)
    opt = one_step([p], fused=True)
    opt.state[p]["exp_avg"] = torch.zeros(3, 4).t()  # e.g. loaded from a foreign state_dict
    with pytest.raises(RuntimeError, match="exp_avg of parameter 0 .* contiguous=False"):
        opt.step()


def test_state_changed_in_place_after_it_was_checked_is_refused_not_written():
    """A state tensor is checked in full once; later steps recheck the same tensor only for
    what can change without replacing it: its address and contiguity."""
    p = torch.zeros(4, 3, requires_grad=True)
    opt = one_step([p], fused=True)
    opt.step()  # the same state tensors as last step: the kept check
    v = opt.state[p]["exp_avg"]
    v.data = v.data.t()  # the same tensor object and address, no longer contiguous
    with pytest.raises(RuntimeError, match="exp_avg of parameter 0 .* contiguous=False"):
        opt.step()
    v.data = torch.zeros(5)  # the same tensor object, another address and size
    with pytest.raises(RuntimeError, match="exp_avg of parameter 0 .* 5 elements"):
        opt.step()


def counts_steps(name: str) -> bool:
    """Whether the optimizer keeps torch's per-parameter `step` in its state."""
    p = torch.zeros(1, requires_grad=True)
    p.grad = torch.ones(1)
    opt = OPTIMIZERS[name]([p], foreach=False)
    opt.step()
    return "step" in opt.state[p]


@pytest.mark.parametrize("name", [name for name in NAMES if counts_steps(name)])
def test_step_counts_stay_zero_dim_tensors_and_follow_assignments_and_skipped_params(name):
    """The group's step counts are advanced together, yet every state keeps its own 0-d
    `step` tensor (torch's state_dict format); a count assigned or loaded is where the
    next step continues, and a parameter without a gradient keeps its count."""
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = OPTIMIZERS[name]([a, b], lr=1e-3)

    def step(*with_grad):
        for p in (a, b):
            p.grad = torch.ones_like(p) if any(p is q for q in with_grad) else None
        opt.step()
        return [opt.state_dict()["state"][i]["step"] for i in (0, 1)]

    for _ in range(3):
        counts = step(a, b)
    assert all(t.dim() == 0 and t.dtype == torch.float32 for t in counts)
    assert [t.item() for t in counts] == [3.0, 3.0]
    assert [t.item() for t in step(a)] == [4.0, 3.0]  # b had no gradient
    assert [t.item() for t in step(a, b)] == [5.0, 4.0]
    opt.state[b]["step"] = torch.tensor(10.0)
    assert [t.item() for t in step(a, b)] == [6.0, 11.0]
    twin = OPTIMIZERS[name]([a, b], lr=1e-3)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    step(a, b)
    twin.step()  # the loaded one continues from what it loaded, apart from the original
    assert [twin.state[p]["step"].item() for p in (a, b)] == [7.0, 12.0]
    assert [opt.state[p]["step"].item() for p in (a, b)] == [7.0, 12.0]


def test_step_hooks_and_the_profiler_label_work_as_in_torch():
    """The step skips torch's wrapper only while it has nothing to do: hooks registered on
    the optimizer or globally run, in torch's order, and the profiler sees the step."""
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    opt = OPTIMIZERS["adam"]([p], lr=0.1)
    calls = []
    handles = [opt.register_step_pre_hook(lambda o, a, k: calls.append(("pre", o, a))),
               opt.register_step_post_hook(lambda o, a, k: calls.append(("post", o, a))),
               register_optimizer_step_pre_hook(
                   lambda o, a, k: calls.append(("global pre", o, a)))]
    loss = opt.step(lambda: 7.0)
    assert loss == 7.0 and opt.state[p]["step"].item() == 1
    assert [c[0] for c in calls] == ["global pre", "pre", "post"]
    assert all(c[1] is opt and c[2][0] is opt and c[2][1]() == 7.0 for c in calls)
    for h in handles:
        h.remove()
    opt.step()
    assert len(calls) == 3 and opt.state[p]["step"].item() == 2  # no hook left: no call
    with torch.profiler.profile() as prof:
        opt.step()
    assert "Optimizer.step#Adam.step" in {e.name for e in prof.events()}
    assert opt.state[p]["step"].item() == 3
    with torch.enable_grad():
        opt.step()
        assert torch.is_grad_enabled()  # restored after the step, which runs without grad


@pytest.mark.skipif(not measure.memory_probe_available(), reason="needs /proc/self/clear_refs")
def test_fused_step_allocates_no_model_sized_temporary():
    n = 4_000_000  # 16 MB of float32 per tensor
    peaks = {}
    for impl in (dict(fused=True), dict(foreach=True)):
        params = [torch.zeros(n, requires_grad=True)]
        params[0].grad = torch.ones(n)
        opt = OPTIMIZERS["adam"](params, **impl)
        opt.step()  # state is allocated on the first step; measure a later one
        peaks[opt.last_impl[0]] = measure.extra_peak_bytes(opt.step)
    assert peaks["foreach"] >= 12e6  # the probe sees a parameter-sized buffer...
    assert peaks["fused"] <= 1e6  # ...and the fused step has none


ADAM_STEP = ("import torch\nfrom optimlab.optim import Adam\n"
             "p = torch.zeros(3, requires_grad=True)\np.grad = torch.ones(3)\n"
             "Adam([p], fused=True).step()\n")


@pytest.mark.slow  # a fresh cache: the first process compiles (tens of seconds here)
def test_compiled_kernels_are_cached_on_disk_and_reused_by_the_next_process(tmp_path):
    """Numba's documented cache (NUMBA_CACHE_DIR): the first process writes the compiled
    kernels there, a second one loads them (seconds saved) and writes nothing new."""
    env = os.environ | {"NUMBA_CACHE_DIR": str(tmp_path)}

    def run_and_list() -> dict[str, float]:
        subprocess.run([sys.executable, "-c", ADAM_STEP], env=env, check=True)
        return {str(f): f.stat().st_mtime_ns for f in tmp_path.rglob("*") if f.is_file()}

    first = run_and_list()
    assert any("adam" in f and f.endswith(".nbc") for f in first)
    assert any("adam" in f and f.endswith(".nbi") for f in first)
    assert run_and_list() == first


class Tagged(torch.Tensor):
    """A tensor subclass the kernels do not know (as FSDP2's DTensor)."""


def test_a_tensor_subclass_runs_foreach_and_never_reaches_the_kernels():
    plain = torch.linspace(-1, 1, 6, dtype=torch.float64).requires_grad_()
    tagged = plain.detach().clone().as_subclass(Tagged).requires_grad_()
    opts = [OPTIMIZERS["adam"]([plain], lr=0.1, foreach=False),
            OPTIMIZERS["adam"]([tagged], lr=0.1)]
    for step in range(3):
        for p, opt in zip((plain, tagged), opts):
            p.grad = torch.full_like(plain, step + 1.0).as_subclass(type(p))
            opt.step()
    assert opts[1].last_impl == ["foreach"]
    torch.testing.assert_close(tagged.detach().as_subclass(torch.Tensor), plain.detach())
    with pytest.raises(RuntimeError, match="parameter 0 is a Tagged, a tensor subclass"):
        OPTIMIZERS["sgd"]([tagged], lr=0.1, fused=True).step()


def test_a_second_thread_gets_the_backend_only_once_it_is_whole():
    """The sweep's groups train side by side: the second group's first step used to find
    the CPU backend half-imported in sys.modules (no kernels yet), step through the torch
    ops and round differently from the first group, in the first sweep of a process."""
    script = """
import sys, threading, time
from optimlab import kernels
name = kernels.BACKENDS["cpu"]
first = threading.Thread(target=kernels.backend, args=("cpu",))
first.start()
while name not in sys.modules:  # the import has begun: numba's takes a while
    time.sleep(0.0005)
module = kernels.backend("cpu")
whole = hasattr(module, "batched") and hasattr(module, "KERNELS")
first.join()
print(whole)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "True", done.stderr


def test_two_threads_first_using_a_kind_both_get_its_kernel(monkeypatch):
    """Two vectorized groups side by side take their first fused step at once; loading
    the kernels' module is slow, and the second thread must wait for it, not find the
    names without the module (a crash in a Ray worker did)."""
    import threading
    import time

    from optimlab.kernels import _numba_formula
    from optimlab.kernels.formula import FORMULAS

    load = _numba_formula.kernels

    def slow(formula, n):
        time.sleep(0.3)
        return load(formula, n)

    monkeypatch.setattr(_numba_formula, "kernels", slow)
    kind = numba_cpu._Kind(FORMULAS["sgd"])
    kw = OPTIMIZERS["sgd"]([torch.zeros(3, requires_grad=True)], lr=0.1).param_groups[0]
    got, errors = [], []

    def first_step():
        try:
            got.append(kind.kernel(kind.structure(kw)))
        except Exception as e:  # collected: an assert in a thread would go unseen
            errors.append(e)

    threads = [threading.Thread(target=first_step) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert errors == [] and len(got) == 2 and got[0] is got[1]
