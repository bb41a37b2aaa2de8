"""What the training ecosystem does to an optimizer: torch.compile around its step, low
precision, checkpoints moved between memory layouts.

Every test runs over the table of optimizers (optim_db.py): a new optimizer gets them with
its row. Where a test needs options that give the optimizer state (SGD's momentum), it takes
the optimizer's defaults and its row's cases.
"""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch
from conftest import GradientField, max_rel_err
from optim_db import DB, NAMES

from optimlab.optim import SPECS


def configs(name: str) -> list[dict[str, Any]]:
    """The optimizer's defaults, then its row's cases."""
    return [{}, *DB[name].cases]


def field_for(name: str, kw: dict[str, Any], shapes: list[tuple[int, ...]] | None = None
              ) -> GradientField:
    return DB[name].field(kw, shapes)


# ---- low precision -----------------------------------------------------------------
# Every path computes a step in float32 and rounds once where it stores: the same numbers.
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", NAMES)
def test_every_path_rounds_as_the_reference_in_low_precision(name, dtype):
    for kw in configs(name):
        field = field_for(name, kw)
        runs = {}
        for impl in ({"foreach": False}, {"foreach": True}, {}):
            params = field.torch_params(dtype)
            opt = SPECS[name].cls(params, **kw, **impl)
            for t in range(1, 101):
                field.set_torch_grads(params, t)
                opt.step()
            runs[opt.last_impl[0] if impl else "default"] = params
        ref = runs.pop("reference")
        # it moved (the row's cases do; a default η may be below the dtype's resolution:
        # steps of ±1e-4 leave bfloat16 weights near 1 where they are)
        assert not kw or any(not torch.equal(w, p.detach().to(dtype))
                             for w, p in zip(ref, field.torch_params(dtype)))
        for impl, params in runs.items():
            for a, b in zip(params, ref):
                assert torch.equal(a, b), (kw, impl)


# ---- torch.compile -----------------------------------------------------------------
def _model(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    return model, torch.randn(64, 6), torch.randint(0, 3, (64,))


def _train(name: str, steps: int, compiled: str | None) -> tuple[list[torch.Tensor], list[str]]:
    """`steps` steps of the optimizer's defaults on a small MLP, η decayed by a scheduler
    every step; `compiled`: None (eager), "step" (`torch.compile(opt.step)`) or "train" (a
    compiled train step that calls it). dynamo's eager backend: the graph around the step
    computes as eager code does, so the results can be compared bit for bit."""
    model, x, y = _model()
    opt = SPECS[name].cls(model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)

    def forward_backward() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()

    def train_step() -> None:
        forward_backward()
        opt.step()

    step = torch.compile(opt.step, backend="eager") if compiled == "step" else opt.step
    run = torch.compile(train_step, backend="eager") if compiled == "train" else None
    for _ in range(steps):
        if run is not None:
            run()
        else:
            forward_backward()
            step()
        sched.step()
    return [p.detach().clone() for p in model.parameters()], opt.last_impl


# Run as a fresh process: each optimizer's first step compiled, before any eager step has
# built its numba kernel (dynamo used to trace into that first build, and crash).
_FIRST_STEPS = """
import sys, torch
sys.path[:0] = sys.argv[2:]
from test_ecosystem import NAMES, _model, _train
compiled = {name: _train(name, 3, sys.argv[1]) for name in NAMES}
initial = [p.detach() for p in _model()[0].parameters()]
for name in NAMES:
    params, impl = compiled[name]
    eager, _ = _train(name, 3, None)
    same = all(map(torch.equal, params, eager))
    moved = any(not torch.equal(a, b) for a, b in zip(params, initial))
    print(name, impl[0], "equal" if same else "differs", "moved" if moved else "still")
"""


@pytest.mark.parametrize("compiled", ["step", "train"])
def test_compiled_first_steps_of_a_process_equal_eager(compiled):
    tests = str(pathlib.Path(__file__).parent)
    proc = subprocess.run([sys.executable, "-c", _FIRST_STEPS, compiled, tests, *sys.path],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()}
    for name, spec in SPECS.items():
        assert lines[name] == ["fused" if spec.kernel else "foreach", "equal", "moved"], name


@pytest.mark.parametrize("compiled", ["step", "train"])
@pytest.mark.parametrize("name", NAMES)
def test_compiled_steps_with_a_new_lr_each_step_never_recompile(name, compiled):
    """More steps than dynamo's recompile limit (8), η new at each: nothing of the step is
    in a graph, so nothing guards on η (a recompile raises here)."""
    import torch._dynamo

    torch._dynamo.reset()
    steps = torch._dynamo.config.recompile_limit + 4
    with torch._dynamo.config.patch(error_on_recompile=True):
        params, impl = _train(name, steps, compiled)
    eager, eager_impl = _train(name, steps, None)
    assert impl == eager_impl
    for a, b in zip(params, eager):
        assert torch.equal(a, b)


# ---- checkpoints across memory layouts ----------------------------------------------
SHAPES_4D = [(4, 3, 3, 3), (4,)]  # a convolution's weight and bias


def _as_layout(params: list[torch.Tensor], channels_last: bool) -> list[torch.Tensor]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [(p.detach().contiguous(memory_format=fmt) if p.dim() == 4 else p.detach().clone())
            .requires_grad_() for p in params]


def _stateful(name: str) -> dict[str, Any]:
    """The first of the optimizer's configurations whose state holds a tensor per parameter
    (SGD at its defaults keeps none)."""
    for kw in configs(name):
        p = torch.zeros(2, requires_grad=True)
        p.grad = torch.ones(2)
        opt = SPECS[name].cls([p], **kw)
        opt.step()
        if any(isinstance(x, torch.Tensor) and x.shape == p.shape
               for x in opt.state[p].values()):
            return kw
    raise AssertionError(f"{name}: no configuration keeps a state tensor per parameter")


def _saved(opt: torch.optim.Optimizer) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("saved_channels_last", [True, False],
                         ids=["channels_last->contiguous", "contiguous->channels_last"])
@pytest.mark.parametrize("name", NAMES)
def test_state_loads_into_parameters_of_another_layout(name, saved_channels_last):
    """The state comes back in the layout of the parameters it is loaded into, and training
    goes on as the run that saved it (float64: the fused kernel and the foreach path, one on
    each side, differ only by rounding)."""
    kw = _stateful(name)
    field = field_for(name, kw, SHAPES_4D)
    first = _as_layout(field.torch_params(), saved_channels_last)
    opt = SPECS[name].cls(first, **kw)
    for t in range(1, 21):
        field.set_torch_grads(first, t)
        opt.step()
    second = _as_layout(first, not saved_channels_last)
    resumed = SPECS[name].cls(second, **kw)
    resumed.load_state_dict(_saved(opt))
    for p in second:
        tensors = [x for x in resumed.state[p].values() if x.shape == p.shape]
        assert tensors and all(x.stride() == p.stride() for x in tensors)
    for t in range(21, 41):
        for params, o in ((first, opt), (second, resumed)):
            field.set_torch_grads(params, t)
            o.step()
    if not saved_channels_last:
        assert resumed.last_impl == ["foreach"]  # channels_last parameters: not fused
    elif SPECS[name].kernel:
        assert resumed.last_impl == ["fused"]
    flat = [np.concatenate([p.detach().numpy().reshape(-1) for p in ps]) for ps in (second, first)]
    assert max_rel_err(*flat) <= 1e-9
