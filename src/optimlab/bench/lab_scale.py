"""The lab-scale case: one optimizer step on the lab's own models, against torch's fastest.

The built-in models on MNIST-1D have 410 (logreg), 5,210 (cnn) and 15,210 (mlp)
parameters in 2-8 tensors: there a step is fixed cost (Python, dispatch, checks), not
memory traffic. For each model's parameter list and each optimizer this times our
default path (`ours`) against torch's fastest path for the same update (`TORCH_TWIN`:
fused where torch has it, SGD and Adam; foreach otherwise), µs per `step()`, in
interleaved rounds, in two settings:

- `steady`: gradients set once, η fixed;
- `training`: as in a training loop, between two steps an LR scheduler changes η and
  `zero_grad(set_to_none=True)` drops the gradients, which then arrive as new tensor
  objects (two pre-made sets in turn, so that the allocator is not what is timed).

Only `step()` is on the clock in both settings: the scheduler and `zero_grad` are
torch's code and cost both sides the same. The clock is the calling thread's CPU time
(`time.thread_time`): at this size every contender runs on the calling thread (ours
below 256K parameters, torch's fused and foreach kernels below their parallel grain),
so that is the step's whole cost, and on a shared machine it is not inflated by the
time the scheduler gives to other processes, as wall time is.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import torch

from optimlab import models
from optimlab.bench import measure
from optimlab.bench.cases import Impl, implementations

# bench model name -> built-in model; shapes as built for MNIST-1D (40 inputs, 10 classes).
LAB_MODELS = {"lab-logreg": "logreg", "lab-cnn": "cnn", "lab-mlp": "mlp"}
INPUT_SHAPE, CLASSES = (40,), 10
VARIANTS = ("steady", "training")
CLOCK = time.thread_time
# The goal: our step in at most this fraction of torch's fastest step, a margin that
# survives a noisy machine.
GOAL_RATIO = 0.35


def lab_shapes(name: str) -> list[tuple[int, ...]]:
    """The parameter shapes of built-in model LAB_MODELS[name] on MNIST-1D."""
    module = models.build(LAB_MODELS[name], INPUT_SHAPE, CLASSES)
    return [tuple(p.shape) for p in module.parameters()]


def contenders(optimizer: str) -> dict[str, Impl]:
    """Our default path on CPU (fused, or Muon's default: foreach on its matrices) and
    torch's fastest path for the same update: fused where torch has one, else foreach."""
    impls = {impl.name: impl for impl in implementations(optimizer)}
    peer = "torch-fused" if "torch-fused" in impls else "torch-foreach"
    ours = impls.get("ours-fused") or impls.get("ours-default") or impls["ours-foreach"]
    return {"ours": ours, peer: impls[peer]}


def _stepper(opt: torch.optim.Optimizer, params: list[torch.Tensor],
             grad_sets: list[list[torch.Tensor]], variant: str) -> Callable[[int], float]:
    """`run(n)`: n steps of `opt` in `variant`; returns the seconds spent inside step()."""
    if variant == "steady":
        def steady(n: int) -> float:
            t0 = CLOCK()
            for _ in range(n):
                opt.step()
            return CLOCK() - t0
        return steady
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + 1e-3 * t))
    sets = itertools.cycle(grad_sets)

    def training(n: int) -> float:
        spent = 0.0
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            for p, g in zip(params, next(sets)):
                p.grad = g
            t0 = CLOCK()
            opt.step()
            spent += CLOCK() - t0
            scheduler.step()
        return spent
    return training


def run_lab_case(optimizer: str, model: str, dtype: torch.dtype, repeats: int, warmup: int,
                 sample_s: float, impls: dict[str, Impl] | None = None) -> dict[str, Any]:
    """Ours and torch's fastest (or `impls`: `contenders` and more of ours), in both
    variants, timed in the same interleaved rounds."""
    gen = torch.Generator().manual_seed(0)
    shapes = lab_shapes(model)
    params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]
    grad_sets = [[torch.randn(s, generator=gen, dtype=dtype) for s in shapes] for _ in range(2)]
    impls = contenders(optimizer) if impls is None else impls
    peer = next(name for name in impls if name.startswith("torch-"))
    runs: dict[str, Callable[[int], float]] = {}
    opts: dict[str, torch.optim.Optimizer] = {}
    for variant in VARIANTS:
        for impl_name, impl in impls.items():
            for p, g in zip(params, grad_sets[0]):
                p.grad = g
            name = f"{impl_name}/{variant}"
            opts[name] = opt = impl.make(params)
            runs[name] = _stepper(opt, params, grad_sets, variant)
    for run in runs.values():
        run(warmup)
    inner = {name: max(1, min(2000, round(sample_s / max(run(1), 1e-7))))
             for name, run in runs.items()}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples[name].append(runs[name](inner[name]) / inner[name])
    rows: list[dict[str, Any]] = []
    for name, xs in samples.items():
        label, variant = name.split("/")
        rows.append({"impl": label, "variant": variant,
                     "path": ",".join(getattr(opts[name], "last_impl", [])) or None,
                     "us": measure.median(xs) * 1e6, "samples_us": [x * 1e6 for x in xs]})
    for variant in VARIANTS:
        ours = next(r for r in rows if r["impl"] == "ours" and r["variant"] == variant)
        theirs = next(r for r in rows if r["impl"] == peer and r["variant"] == variant)
        ours["ratio_to_torch"] = ours["us"] / theirs["us"]
    return {"kind": "lab-scale", "optimizer": optimizer, "model": model,
            "description": f"the built-in {LAB_MODELS[model]} on MNIST-1D",
            "dtype": str(dtype).removeprefix("torch."), "params": sum(p.numel() for p in params),
            "tensors": len(params), "peer": peer, "clock": "thread CPU time", "rows": rows}


def format_lab_case(case: dict[str, Any]) -> list[str]:
    lines = [f"{case['optimizer']} on {case['model']}: {case['description']}, "
             f"{case['params']:,} params, {case['tensors']} tensors (µs of CPU per step, "
             "medians)",
             f"  {'impl':<16}{'variant':<10}{'µs/step':>10}{'÷ torch':>9}"]
    for r in case["rows"]:
        ratio = r.get("ratio_to_torch")
        lines.append(f"  {r['impl']:<16}{r['variant']:<10}{r['us']:>10.1f}"
                     f"{'' if ratio is None else format(ratio, '.2f'):>9}")
    return lines
