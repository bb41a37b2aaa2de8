"""The Triton kernels (the CUDA backend), run by Triton's interpreter on CPU tensors.

TRITON_INTERPRET=1 executes the same kernel source with NumPy, where a pointer is a
host address; `triton_cuda.DEVICE_TYPE = "cpu"` and the "cpu" entry of
`kernels.BACKENDS` pointed at `triton_cuda` send the optimizers' fused path through
these kernels here. Sizes are small and BLOCK is 64 (several programs per tensor,
masked tails): the interpreter runs every program in Python. The same cases run
compiled on a GPU in test_triton_cuda.py.
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from optim_db import DB, cases, rich

from optimlab import kernels
from optimlab.kernels import numba_cpu
from optimlab.kernels.formula import FORMULAS, Formula, maximum, sign, sqrt
from optimlab.optim import OPTIMIZERS
from optimlab.optim._formula import reference

triton_cuda = importlib.import_module("optimlab.kernels.triton_cuda")
BLOCK = 64
SHAPES = [(3,), (2, 35), (0,), (64,), (BLOCK + 1,)]


@pytest.fixture(scope="module")
def interpreted():
    """The kernels redefined under TRITON_INTERPRET=1 (@triton.jit reads it), then back."""
    from triton.runtime.interpreter import InterpretedFunction

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")
        importlib.reload(triton_cuda.k)
        assert isinstance(triton_cuda.k.sqrt, InterpretedFunction)
        yield
    importlib.reload(triton_cuda.k)


@pytest.fixture(autouse=True)
def triton_on_cpu(interpreted, monkeypatch):
    """The CUDA backend, interpreted, as the backend of CPU tensors."""
    monkeypatch.setattr(triton_cuda, "DEVICE_TYPE", "cpu")
    monkeypatch.setattr(triton_cuda, "BLOCK", BLOCK)
    monkeypatch.setitem(kernels.BACKENDS, "cpu", "optimlab.kernels.triton_cuda")


# Every case of every optimizer with a kernel (optim_db.py).
CASES, IDS = cases(lambda row: bool(row.spec.kernel))
# Storage dtypes: float32 against the float64 reference; bfloat16 and float16 against the
# reference rounded to that dtype after every step (what storing in it does).
# Tolerances: float32 rounding; for the low dtypes four units of the last place (2^-8
# relative in bfloat16, 2^-11 in float16): every stored value may be one unit off (the
# interpreter truncates where a GPU rounds to nearest), carried into the next step.
TOLERANCE = {torch.float32: (2e-5, 1e-6), torch.bfloat16: (4 * 2**-8, 1e-3),
             torch.float16: (4 * 2**-11, 1e-4)}
STEPS = 3


def gradients(dtype: torch.dtype, steps: int = STEPS, seed: int = 0) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen).to(dtype) for s in SHAPES] for _ in range(steps)]


def start(dtype: torch.dtype, seed: int = 1, device: str = "cpu") -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(device, dtype) for s in SHAPES]


def rounded_reference(name, kw, dtype, grads):
    """The float64 reference, its parameters and state rounded to `dtype` after every step."""
    params = [p.double() for p in start(dtype)]
    opt = OPTIMIZERS[name](params, **kw, foreach=False)
    history = []
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.double()
        opt.step()
        assert opt.last_impl == ["reference"]
        if dtype != torch.float32:
            for t in [*params, *(v for st in opt.state.values() for v in st.values()
                                 if isinstance(v, torch.Tensor) and v.dim() > 0)]:
                t.copy_(t.to(dtype))
        history.append([p.clone() for p in params])
    return history, opt


def numpy_reference(name, kw, grads):
    """The independent NumPy float64 reference from the same start with the same gradients:
    its last weights."""
    out = []
    for i, w in enumerate(start(torch.float32)):
        ref, w = DB[name].reference(**kw), w.double().numpy()
        for step in grads:
            w = ref.step(w, step[i].double().numpy())
        out.append(torch.from_numpy(w))
    return out


def fused(name, kw, dtype, grads, device="cpu"):
    params = start(dtype, device=device)
    opt = OPTIMIZERS[name](params, **kw, fused=True)
    history = []
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.to(device, copy=True)
        opt.step()
        assert opt.last_impl == ["fused"]
        history.append([p.detach().to("cpu", copy=True) for p in params])
    return history, opt


def assert_close(ours, ref, dtype):
    rtol, atol = TOLERANCE[dtype]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.double(), b, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_every_option_matches_the_float64_reference(name, kw):
    grads = gradients(torch.float32)
    ours, opt = fused(name, kw, torch.float32, grads)
    ref, ref_opt = rounded_reference(name, kw, torch.float32, grads)
    for step_ours, step_ref in zip(ours, ref):
        assert_close(step_ours, step_ref, torch.float32)
    assert_close(ours[-1], numpy_reference(name, kw, grads), torch.float32)
    for p, q in zip(opt.param_groups[0]["params"], ref_opt.param_groups[0]["params"]):
        for key, value in ref_opt.state[q].items():
            got = opt.state[p][key]
            torch.testing.assert_close(got.double(), value.double(), rtol=2e-5, atol=1e-6)


# One case per optimizer with many options on, in each low-precision storage dtype.
LOW = [(name, kw) for name, kw in rich()[0] if DB[name].spec.kernel]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name,kw", LOW, ids=[n for n, _ in LOW])
def test_low_precision_storage_with_float32_math(name, kw, dtype):
    grads = gradients(dtype, steps=2)
    ours, opt = fused(name, kw, dtype, grads)
    ref, _ = rounded_reference(name, kw, dtype, grads)
    assert all(p.dtype == dtype for p in opt.param_groups[0]["params"])
    for step_ours, step_ref in zip(ours, ref):
        assert_close(step_ours, step_ref, dtype)


def test_complex_parameters_are_two_reals():
    z = [torch.randn(5, dtype=torch.complex64), torch.randn(70, dtype=torch.complex64)]
    g = [torch.randn_like(t) for t in z]
    ref = [t.to(torch.complex128) for t in z]
    for params, kw in ((z, dict(fused=True)), (ref, dict(foreach=False))):
        opt = OPTIMIZERS["adam"](params, lr=0.1, amsgrad=True, **kw)
        for _ in range(2):
            for p, q in zip(params, g):
                p.grad = q.to(p.dtype)
            opt.step()
    assert opt.last_impl == ["reference"]
    for a, b in zip(z, ref):
        torch.testing.assert_close(a.to(torch.complex128), b, rtol=2e-5, atol=1e-6)


def test_a_parameter_that_joins_later_gets_its_own_first_step():
    """SGD creates its buffer (v₁ = g) and Adam counts t per tensor: two tensors differ."""
    for name, kw in (("sgd", dict(lr=0.1, momentum=0.9)), ("adam", dict(lr=0.1))):
        runs = []
        for impl in (dict(fused=True), dict(foreach=False)):
            dtype = torch.float32 if "fused" in impl else torch.float64
            params = [torch.ones(70, dtype=dtype), torch.ones(3, dtype=dtype)]
            opt = OPTIMIZERS[name](params, **kw, **impl)
            for t in range(3):
                params[0].grad = torch.full((70,), 0.5 + t, dtype=dtype)
                params[1].grad = None if t == 0 else torch.full((3,), -1.0 - t, dtype=dtype)
                opt.step()
            runs.append(params)
        for a, b in zip(*runs):
            torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-7)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # NumPy on NaN, as meant
@pytest.mark.parametrize("name,kw", LOW, ids=[n for n, _ in LOW])
def test_nan_and_inf_propagate_as_in_the_reference(name, kw):
    bad = gradients(torch.float32, steps=2)
    bad[0][1][0, 0], bad[0][1][1, 3], bad[1][3][5] = float("nan"), float("inf"), -float("inf")
    ours, _ = fused(name, kw, torch.float32, bad)
    ref, _ = rounded_reference(name, kw, torch.float32, bad)
    for a, b in zip(ours[-1], ref[-1]):
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.isinf(), b.isinf())
        assert_close([a], [b], torch.float32)


def test_centered_rmsprop_clamps_s_minus_m_squared_at_zero():
    """s − m² < 0 (as rounding can make it) divides by ε, where √ would give NaN."""
    runs = []
    for dtype, impl in ((torch.float32, dict(fused=True)), (torch.float64, dict(foreach=False))):
        m = torch.linspace(0.5, 2.0, 70, dtype=dtype)
        w = torch.zeros(70, dtype=dtype)
        opt = OPTIMIZERS["rmsprop"]([w], lr=1e-6, eps=1e-3, centered=True, **impl)
        w.grad = torch.zeros_like(w)
        opt.step()  # creates the state
        st = opt.state[w]
        st["grad_avg"].copy_(m)
        st["square_avg"].copy_(m * m * (1 - 1e-5))  # s − m² < 0 after the next step too
        w.zero_()
        w.grad = m.clone()
        opt.step()
        runs.append(w)
    assert torch.isfinite(runs[0]).all()
    torch.testing.assert_close(runs[0].double(), runs[1], rtol=1e-5, atol=0)
    torch.testing.assert_close(runs[1], -1e-6 * torch.linspace(0.5, 2.0, 70,
                                                               dtype=torch.float64) / 1e-3)


class Launches:
    """Records the kernel launches (grid and arguments) of the interpreter."""

    def __init__(self, monkeypatch):
        from triton.runtime.interpreter import InterpretedFunction

        self.calls: list[tuple[tuple, tuple, dict]] = []
        run = InterpretedFunction.run

        def launch(kernel, *args, grid, warmup, **kw):
            self.calls.append((grid, args, kw))
            return run(kernel, *args, grid=grid, warmup=warmup, **kw)

        monkeypatch.setattr(InterpretedFunction, "run", launch)


def test_one_launch_per_group_covering_every_element_once(monkeypatch):
    launches = Launches(monkeypatch)
    params = start(torch.float32)
    opt = OPTIMIZERS["sgd"](params, lr=1.0)
    for p in params:
        p.grad = torch.ones_like(p)
    before = [p.clone() for p in params]
    opt.step()
    assert len(launches.calls) == 1
    grid, args, _ = launches.calls[0]
    chunks = args[0]
    expected = sum((p.numel() + BLOCK - 1) // BLOCK for p in params)
    assert grid == (expected,) and chunks.shape == (expected, 2)
    for p, b in zip(params, before):  # each element stepped exactly once: w − 1·1
        assert torch.equal(p, b - 1)


def test_hyperparameters_are_data_so_a_new_lr_does_not_recompile(monkeypatch):
    """Only tensors and compile-time options reach the kernel: the values of η, β, t
    travel in the uploaded table, so the compiled kernel's key does not change."""
    launches = Launches(monkeypatch)
    params = start(torch.float32)
    opt = OPTIMIZERS["adam"](params, lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        for p, g in zip(params, gradients(torch.float32, 1)[0]):
            p.grad = g
        opt.step()
        sched.step()
    keys = {tuple(sorted(kw.items(), key=lambda kv: kv[0])).__repr__()
            for _, _, kw in launches.calls}
    assert len(launches.calls) == 3 and len(keys) == 1
    for _, args, _ in launches.calls:
        assert all(isinstance(a, torch.Tensor) for a in args)
    tables = [args[1] for _, args, _ in launches.calls]
    assert not torch.equal(tables[0], tables[1])  # η and the bias corrections changed


def grad_scale_run(found_inf: float, scale: float = 1024.0):
    """One Adam step whose gradients GradScaler scaled by `scale` (or found non-finite)."""
    params = start(torch.float32)
    opt = OPTIMIZERS["adam"](params, lr=1e-2, amsgrad=True)
    grads = gradients(torch.float32, 1)[0]
    for p, g in zip(params, grads):
        p.grad = g * scale
    opt.grad_scale = torch.tensor(scale)
    opt.found_inf = torch.tensor(found_inf)
    opt.step()
    return params, opt, grads


def test_grad_scale_is_divided_out_in_the_kernel():
    params, opt, grads = grad_scale_run(found_inf=0.0)
    ref, _ = rounded_reference("adam", dict(lr=1e-2, amsgrad=True), torch.float32, [grads])
    assert opt.last_impl == ["fused"]
    assert_close(params, ref[0], torch.float32)
    for p, g in zip(params, grads):  # written back unscaled, as GradScaler.unscale_ does
        torch.testing.assert_close(p.grad, g)


def test_found_inf_skips_the_step_and_its_count():
    params, opt, _ = grad_scale_run(found_inf=1.0)
    assert all(torch.equal(p, q) for p, q in zip(params, start(torch.float32)))
    assert opt.skipped_steps == 1 and not opt.state


@pytest.mark.parametrize("found", [0.0, 1.0])
def test_kernels_skip_in_kernel_on_found_inf(found):
    """The functional kernels take found_inf themselves: no host read, nothing written."""
    params, grads = start(torch.float32), gradients(torch.float32, 1)[0]
    ref = [p.double() for p in params]
    states = [[torch.zeros_like(p) for p in params] for _ in range(3)]
    kw = dict(lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0, decoupled=False,
              amsgrad=True, maximize=False)
    scale = torch.tensor(4.0)
    triton_cuda.KERNELS["adam"](params, [g * 4 for g in grads], *states, [1] * len(params),
                                **kw, grad_scale=scale, found_inf=torch.tensor(found))
    if found:
        assert all(torch.equal(p, q) for p, q in zip(params, start(torch.float32)))
        assert all(not s.any() for st in states for s in st)
    else:
        from optimlab.optim.adam import adam_reference
        adam_reference(ref, [g.double() for g in grads],
                       *[[s.double().zero_() for s in st] for st in states],
                       [1] * len(params), **kw)
        assert_close(params, ref, torch.float32)


@pytest.mark.parametrize("impl", ["triton", "numba", "foreach", "reference"])
def test_torch_grad_scaler_drives_every_path(impl, monkeypatch):
    """torch.amp.GradScaler hands grad_scale/found_inf to step() (the Triton kernels divide
    in-kernel, the other paths on the host): the run equals one without scaling, and an
    overflowing step is skipped."""
    if impl == "numba":
        monkeypatch.setitem(kernels.BACKENDS, "cpu", "optimlab.kernels.numba_cpu")
    choice = {"triton": dict(fused=True), "numba": dict(fused=True),
              "foreach": dict(foreach=True), "reference": dict(foreach=False)}[impl]
    runs = []
    for scaler in (torch.amp.GradScaler("cpu", init_scale=2.0**10), None):
        params = [p.requires_grad_() for p in start(torch.float32)]
        opt = OPTIMIZERS["adam"](params, lr=1e-2, **choice)
        for t in range(3):
            loss = sum((p * g).sum() for p, g in zip(params, gradients(torch.float32, 1, t)[0]))
            if t == 1:
                loss = loss * float("inf")
            if scaler is None:
                if t != 1:
                    loss.backward()
                    opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            opt.zero_grad()
        runs.append((params, opt))
    (ours, opt), (ref, _) = runs
    assert opt.skipped_steps == 1 and opt.last_impl == [choice_path(impl)]
    assert_close([p.detach() for p in ours], [p.detach().double() for p in ref], torch.float32)


def choice_path(impl: str) -> str:
    return "fused" if impl in ("triton", "numba") else impl


# ---- a formula made here: its kernel is written with no change to the backend -----------
def toy_element(w, g, m, peak, *, lr, beta1, rest1, beta2, rest2, warm, track):
    """A sign step, warmed by t/(t+1); with `track`, a step scaled by the largest g²
    so far (at least 0.25) instead."""
    c = beta1 * m + rest1 * g
    if track:
        peak = maximum(peak, g * g)
        w = w - lr * c / sqrt(maximum(peak, 0.25))
    else:
        w = w - lr * warm * sign(c)
    m = beta2 * m + rest2 * g
    return w, m, peak


@pytest.fixture
def toy():
    """The formula, registered as an optimizer's file registers its own, and then removed."""
    formula = Formula(
        name="toy_sign", element=toy_element, states=("m", "peak"),
        scalars=lambda kw: dict(lr=kw["lr"], beta1=kw["beta1"], rest1=1 - kw["beta1"],
                                beta2=kw["beta2"], rest2=1 - kw["beta2"]),
        flags=lambda kw: dict(track=bool(kw["track"])),
        terms=lambda kw, t: dict(warm=t / (t + 1.0)), uses={"peak": "track"},
        keys={"m": "exp_avg"})
    yield formula
    del FORMULAS[formula.name]


def backend_kernels(backend: str):
    """The fused kernels of a backend: Triton (here in its interpreter), or numba's on CPU,
    written from the same formulas."""
    return triton_cuda.KERNELS if backend == "triton" else numba_cpu.KERNELS


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # NumPy on NaN, as meant
@pytest.mark.parametrize("backend", ["triton", "numba"])
@pytest.mark.parametrize("track,maximize", [(False, False), (True, True)])
def test_a_new_formula_gets_its_kernel_from_its_element(toy, track, maximize, backend):
    """Scalars, a per-tensor term (each tensor at its own t), a flag and the state it
    uses, `sign`, `maximum` with a tensor and with a number, `sqrt`: the kernel written
    from the element against the formula's float64 reference path; a NaN gradient gives
    sign 0 (w stays), as torch.sign."""
    assert "toy_sign" in backend_kernels(backend)
    kw = dict(lr=0.1, beta1=0.9, beta2=0.99, track=track, maximize=maximize)
    steps = [[t + i % 3 for i in range(len(SHAPES))] for t in (1, 2, 3)]
    grads = gradients(torch.float32)
    grads[0][1][0, 0] = float("nan")
    runs = []
    for dtype, update in ((torch.float32, backend_kernels(backend)["toy_sign"]),
                          (torch.float64, reference(toy))):
        params = [p.to(dtype) for p in start(torch.float32)]
        states = [[torch.zeros_like(p) for p in params] if on else [None] * len(params)
                  for on in (True, track)]
        for step, t in zip(grads, steps):
            update(params, [g.to(dtype) for g in step], *states, t, **kw)
        runs.append([*params, *(s for ts in states for s in ts if s is not None)])
    assert_close(runs[0], runs[1], torch.float32)
    if not track:  # sign(NaN) = 0 from then on
        assert runs[0][1][0, 0] == start(torch.float32)[1][0, 0]


def sign_element(w, g, *, lr):
    """signSGD: no state, no flag, no term."""
    return (w - lr * sign(g),)


@pytest.mark.parametrize("backend", ["triton", "numba"])
def test_a_formula_with_no_state_flag_or_term_gets_its_kernel(backend):
    formula = Formula(name="toy_signsgd", element=sign_element, states=(),
                      scalars=lambda kw: dict(lr=kw["lr"]))
    try:
        params, grads = start(torch.float32), gradients(torch.float32, 1)[0]
        ref = [p.double() for p in params]
        backend_kernels(backend)["toy_signsgd"](params, grads, lr=0.5, maximize=True)
        reference(formula)(ref, [g.double() for g in grads], lr=0.5, maximize=True)
    finally:
        del FORMULAS[formula.name]
    assert_close(params, ref, torch.float32)


def test_dispatch_registers_the_cuda_backend_and_reports_the_path():
    assert kernels.BACKENDS["cuda"] == "optimlab.kernels.triton_cuda"
    params = start(torch.float32)
    for p in params:
        p.grad = torch.ones_like(p)
    opt = OPTIMIZERS["rmsprop"](params)  # fused=None: the fused path where it can run
    opt.step()
    assert opt.last_impl == ["fused"]
    mixed = [torch.zeros(3), torch.zeros(3, dtype=torch.float64)]
    for p in mixed:
        p.grad = torch.ones_like(p)
    opt = OPTIMIZERS["rmsprop"](mixed)
    opt.step()
    assert opt.last_impl == ["foreach"]
    with pytest.raises(RuntimeError, match=r"RMSprop\(fused=True\) cannot run here: one param "
                                           r"group mixes dtypes"):
        OPTIMIZERS["rmsprop"](mixed, fused=True).step()


def test_without_triton_fused_true_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton fails
    monkeypatch.delitem(sys.modules, "optimlab.kernels.triton_cuda")
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    opt = OPTIMIZERS["adam"]([p])
    opt.step()
    assert opt.last_impl == ["foreach"]
    with pytest.raises(RuntimeError) as e:
        OPTIMIZERS["adam"]([p], fused=True).step()
    assert str(e.value).startswith("Adam(fused=True) cannot run here: the cpu backend cannot "
                                   "load (triton is not installed")
    assert str(e.value).endswith("install the extra: pip install 'optimlab[triton]')")


def test_state_that_does_not_fit_the_kernel_is_refused_not_written():
    w = torch.zeros(70)
    w.grad = torch.ones(70)
    opt = OPTIMIZERS["momentum"]([w], fused=True)
    opt.step()
    opt.state[w]["momentum_buffer"] = torch.zeros(70, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="momentum_buffer of parameter 0 is torch.float64"):
        opt.step()


# ---- optimlab bench --device cuda -------------------------------------------------------
def test_bench_device_cuda_without_a_gpu_is_a_one_line_error(capsys):
    from optimlab.cli import main

    assert main(["bench", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optimlab bench: error: Invalid --device 'cuda': no CUDA device")
    assert "\n" not in err


def test_bench_cuda_case_times_ours_against_torch_on_the_device(monkeypatch):
    """The CUDA bench's flow, its CUDA-only parts (events, allocator, placement) swapped
    for the CPU's: rows, paths and the GPU goals come out as on a GPU."""
    from optimlab.bench import cuda, format_table, measure, run, run_bench

    monkeypatch.setattr(cuda, "unavailable", lambda: None)
    monkeypatch.setattr(cuda, "time_once", measure.time_once)
    monkeypatch.setattr(cuda, "extra_peak_bytes", lambda step: (step(), 0)[1])
    monkeypatch.setattr(cuda, "machine", lambda: {"gpu": "interpreter", "triton": "3"})
    make_params, stream_step = run.make_params, measure.stream_step
    monkeypatch.setattr(run, "make_params",
                        lambda shapes, dtype, device: make_params(shapes, dtype))
    monkeypatch.setattr(measure, "stream_step",
                        lambda numel, dtype, device: stream_step(numel, dtype))
    cfg = run.BenchConfig(optimizers=("sgd",), models=("2x100",), repeats=1,
                          warmup=1, sample_s=1e-6, device="cuda")
    record = run_bench(cfg)
    for case in record["cases"]:
        paths = {r["impl"]: r["path"] for r in case["rows"]}
        assert paths["ours-fused"] == "fused" and paths["ours-foreach"] == "foreach"
        assert all(r["extra_peak_mb"] == 0 for r in case["rows"])
    assert "torch-fused" in {r["impl"] for r in record["cases"][0]["rows"]}
    assert format_table(record).startswith("gpu='interpreter' triton=3 ")


def test_gpu_goals_hold_at_25m_and_at_the_gpt_like_list():
    from optimlab.bench import goals

    cases = [{"optimizer": "adam", "model": model, "rows": [
        {"impl": "ours-fused", "ms": 1.0, "roofline": 0.86},
        {"impl": "torch-fused", "ms": 0.9, "roofline": 0.95}]} for model in ("25M", "mixed")]
    got = {g["goal"]: (g["value"], g["target"], g["met"]) for g in goals(cases, "cuda")}
    for model in ("25M", "mixed"):
        assert got[f"adam fused ≥ 85% of roofline ({model})"] == (0.86, 0.85, True)
        assert got[f"adam fused ≥ torch's fused Adam ({model})"] == (0.9, 1.0, False)


def test_sweep_device_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    from optimlab.cli import main

    assert main(["sweep", "--device", "cuda", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("optimlab sweep: error: Invalid device: 'cuda': no CUDA device here; "
                   "allowed: cpu")
