"""Step-size diagnostics: effective_step_size against a float64 reference and torch.optim,
the recorder against quantities computed here from saved weights, and the figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from optim_db import DB
from summaries import runs as summary_runs

from optimlab.lab.diagnostics import StepSizeRecorder
from optimlab.optim import OPTIMIZERS, SPECS
from optimlab.optim.diagnostics import effective_step_size
from optimlab.report.diagnostics import render

LR, EPS = 0.05, 1e-8


def _grads(steps: int, n: int = 6) -> list[np.ndarray]:
    """Gradients whose scales differ by 1e4 between elements, so the factors differ."""
    rng = np.random.default_rng(0)
    scale = np.logspace(-2, 2, n)
    return [rng.standard_normal(n) * scale for _ in range(steps)]


def _reference(kind: str, grads: list[np.ndarray], **hp) -> np.ndarray:
    """η/(√ŝ+ε) from the lecture's recurrences, written out in NumPy float64."""
    s, m, s_max = np.zeros_like(grads[0]), np.zeros_like(grads[0]), np.zeros_like(grads[0])
    beta = hp["alpha"] if kind == "rmsprop" else hp.get("betas", (0.9, 0.999))[1]
    for g in grads:
        s = beta * s + (1 - beta) * g * g
        m = beta * m + (1 - beta) * g
        s_max = np.maximum(s_max, s)
    if kind == "rmsprop":
        return LR / (np.sqrt(s - m * m if hp.get("centered") else s) + EPS)
    if kind == "adagrad":  # s = Σg², η_t = η/(1 + (t−1)·lr_decay)
        total = sum(g * g for g in grads)
        return LR / (1 + (len(grads) - 1) * hp.get("lr_decay", 0.0)) / (np.sqrt(total) + EPS)
    s_hat = (s_max if hp.get("amsgrad") else s) / (1 - beta ** len(grads))
    return LR / (np.sqrt(s_hat) + EPS)


# alpha always given: torch.optim.RMSprop's default (0.99) is not the lecture's (0.9)
CASES = [("rmsprop", {"alpha": 0.9}), ("rmsprop", {"alpha": 0.9, "centered": True}),
         ("rmsprop", {"alpha": 0.99}), ("rmsprop", {"alpha": 0.9, "momentum": 0.5}),
         ("adam", {}), ("adam", {"amsgrad": True}), ("adamw", {"betas": (0.8, 0.99)}),
         ("adagrad", {}), ("adagrad", {"lr_decay": 0.1})]


def _run(cls, grads: list[np.ndarray], **hp) -> tuple[torch.optim.Optimizer, torch.Tensor]:
    p = torch.zeros(len(grads[0]), dtype=torch.float64, requires_grad=True)
    opt = cls([p], lr=LR, **hp)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    return opt, p


@pytest.mark.parametrize("kind,hp", CASES)
@pytest.mark.parametrize("impl", ["ours", "torch"])
def test_effective_step_matches_reference(kind, hp, impl):
    grads = _grads(7)
    opt, p = _run(OPTIMIZERS[kind] if impl == "ours" else DB[kind].peer_cls, grads, eps=EPS, **hp)
    np.testing.assert_allclose(effective_step_size(opt, p).numpy(), _reference(kind, grads, **hp),
                               rtol=1e-10)


def test_effective_step_is_the_factor_of_the_update():
    grads = _grads(4)
    for kind in ("rmsprop", "adam"):
        opt, p = _run(OPTIMIZERS[kind], grads[:-1])
        before, g = p.detach().clone(), torch.tensor(grads[-1])
        p.grad = g
        opt.step()
        eff = effective_step_size(opt, p)
        if kind == "rmsprop":
            np.testing.assert_allclose(p.detach() - before, -eff * g, rtol=1e-10)
        else:  # Adam: the factor multiplies v̂, not g
            v_hat = opt.state[p]["exp_avg"] / (1 - 0.9**4)
            np.testing.assert_allclose(p.detach() - before, -eff * v_hat, rtol=1e-10)


def test_effective_step_is_none_without_second_moment():
    p = torch.zeros(3, requires_grad=True)
    for name in (n for n, spec in SPECS.items()
                 if spec.formula is None or spec.formula.denominator is None):
        opt, q = _run(OPTIMIZERS[name], _grads(2, 3))
        assert effective_step_size(opt, q) is None
    fresh = OPTIMIZERS["adam"]([p])
    assert effective_step_size(fresh, p) is None  # no step yet
    opt, q = _run(OPTIMIZERS["adam"], _grads(2, 3))
    assert effective_step_size(opt, p) is None  # not this optimizer's parameter


class _Loop:
    """A tiny regression trained by hand, calling the recorder as train_run does."""

    def __init__(self, name: str, steps: int, recorder: StepSizeRecorder, lr: float = 0.01):
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(5, 80), torch.nn.Tanh(),
                                         torch.nn.Linear(80, 1)).double()
        self.opt = OPTIMIZERS[name](self.model.parameters(), lr=lr)
        x = torch.randn(64, 5, dtype=torch.float64)
        self.weights = [[p.detach().clone() for p in self.model.parameters()]]
        for step in range(1, steps + 1):
            self.opt.zero_grad()
            torch.nn.functional.mse_loss(self.model(x), x.sin().sum(1, keepdim=True)).backward()
            self.opt.step()
            self.weights.append([p.detach().clone() for p in self.model.parameters()])
            recorder.on_step_end(step, self.model, self.opt)


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
def test_recorder_update_ratio(name):
    rec = StepSizeRecorder(every=5)
    loop = _Loop(name, 22, rec)
    out = json.loads(json.dumps(rec.result(), allow_nan=False))
    assert out["steps"] == [5, 10, 15, 20] and out["optimizer"] == name
    names = [n for n, _ in loop.model.named_parameters()]
    for i, step in enumerate(out["steps"]):
        new, old = loop.weights[step], loop.weights[step - 1]
        for j, n in enumerate(names):
            expected = float((new[j] - old[j]).norm() / old[j].norm())
            assert out["update_ratio"][n][i] == pytest.approx(expected, rel=1e-9)
        total = float(torch.cat([(a - b).reshape(-1) for a, b in zip(new, old)]).norm()
                      / torch.cat([b.reshape(-1) for b in old]).norm())
        assert out["update_ratio_total"][i] == pytest.approx(total, rel=1e-9)
    assert bool(out["effective_step"]) == (name in ("rmsprop", "adam"))


def test_recorder_quantiles_exact_and_subsampled():
    small, big = StepSizeRecorder(every=4, sample=10_000), StepSizeRecorder(every=4, sample=50)
    loop = _Loop("adam", 8, small)
    _Loop("adam", 8, big)
    eff = effective_step_size(loop.opt, loop.model[0].weight).reshape(-1).double()
    q = torch.quantile(eff, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    got = small.result()["effective_step"]["0.weight"]
    assert [got["q0.1"][-1], got["q0.5"][-1], got["q0.9"][-1]] == pytest.approx(q, rel=1e-12)
    sub = big.result()["effective_step"]["0.weight"]  # 50 of the 400 elements
    assert eff.min() <= sub["q0.1"][-1] <= sub["q0.5"][-1] <= sub["q0.9"][-1] <= eff.max()
    assert sub["q0.5"][-1] != got["q0.5"][-1]


@pytest.mark.parametrize("kwargs,needle", [({"every": 0}, "every: 0"), ({"sample": 0}, "sample"),
                                           ({"quantiles": (0.5, 1.5)}, "quantiles")])
def test_recorder_bad_input(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        StepSizeRecorder(**kwargs)


def test_render_writes_both_figures(tmp_path):
    records = []
    for name in ("sgd", "adam"):
        rec = StepSizeRecorder(every=3)
        _Loop(name, 12, rec)
        records.append({"run": f"{name}-s0", "optimizer": name, "seed": 0,
                        "hyperparameters": {"lr": 0.01}, "diagnostics": {rec.name: rec.result()}})
    paths = render(json.loads(json.dumps(records)), tmp_path)
    assert [p.name for p in paths] == ["diagnostics_effective_step.png",
                                       "diagnostics_update_ratio.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    assert render([{"run": "x", "diagnostics": {"Other": {"kind": "else"}}}], tmp_path) == []


def test_compare_diagnostics_flag_records_without_changing_training(tmp_path):
    from optimlab.cli import main

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = (rng.normal(0, 1, (200, 5)) + 0.5 * (2 * y[:, None] - 1)).astype(np.float32)
    np.savez(tmp_path / "blobs.npz", x=x, y=y)
    argv = ["compare", "--dataset", f"npz:{tmp_path / 'blobs.npz'}", "--model", "mlp",
            "--optimizers", "sgd,adam", "--steps", "20", "--eval-every", "10", "--seeds", "1",
            "--batch-size", "8"]
    # runs with recorders train one by one: the plain run too, to compare like with like
    assert main([*argv, "--executor", "sequential", "--out", str(tmp_path / "plain")]) == 0
    assert main([*argv, "--diagnostics", "4", "--out", str(tmp_path / "diag")]) == 0
    assert not (tmp_path / "plain" / "diagnostics.json").exists()
    entries = json.loads((tmp_path / "diag" / "diagnostics.json").read_text())
    assert [e["optimizer"] for e in entries] == ["sgd", "adam"]
    assert all(e["diagnostics"]["step_sizes"]["steps"] == [4, 8, 12, 16, 20] for e in entries)
    loss = [[r["final_train_loss"] for r in summary_runs(tmp_path / d)] for d in ("plain", "diag")]
    assert loss[0] == loss[1]
    html = (tmp_path / "diag" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3  # curves + the two diagnostics figures
