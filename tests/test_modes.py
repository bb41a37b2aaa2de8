"""Optimizers that train at one point and are evaluated at another (Schedule-Free's y and
x): every training path evaluates with `optimizer.eval()` and trains on after `train()`."""

from __future__ import annotations

import importlib.util
import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from test_train import DS, config, values

from optimlab.lab.executors import run_vectorized
from optimlab.landscape.functions import FUNCTIONS
from optimlab.landscape.run import run_paths
from optimlab.optim import AdamWScheduleFree
from optimlab.train import loop, train_run


class ZeroAtEval(torch.optim.SGD):
    """torch's SGD whose eval() zeroes the weights (kept aside) and train() restores them;
    a step in eval mode is refused, as schedulefree's."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, lr=lr)
        self.kept: list[torch.Tensor] | None = None
        self.training = False

    @torch.no_grad()
    def eval(self):
        if self.training:
            params = [p for g in self.param_groups for p in g["params"]]
            self.kept = [p.clone() for p in params]
            for p in params:
                p.zero_()
        self.training = False

    @torch.no_grad()
    def train(self):
        if not self.training and self.kept is not None:
            params = [p for g in self.param_groups for p in g["params"]]
            for p, k in zip(params, self.kept):
                p.copy_(k)
        self.training = True

    def step(self, closure=None):
        if not self.training:
            raise RuntimeError("step() in eval mode")
        return super().step(closure)


def test_a_user_optimizer_is_evaluated_in_its_eval_mode_and_trains_in_its_train_mode():
    """Every evaluation sees zero weights (logistic regression: uniform logits, a loss of
    ln 3 on 3 classes); training goes on from the restored weights, as torch's SGD."""
    ours = train_run(config(optimizer="test_modes:ZeroAtEval", hyperparameters={"lr": 0.1}), DS)
    plain = train_run(config(optimizer="torch.optim:SGD", hyperparameters={"lr": 0.1}), DS)
    assert np.array_equal(values(ours.curves, "batch", "loss"),
                          values(plain.curves, "batch", "loss"))
    for split in ("train", "val", "test"):
        evaluated = values(ours.curves, split, "loss")
        assert len(evaluated) == 4  # steps 0, 8, 16, 24
        np.testing.assert_allclose(evaluated, math.log(3), rtol=1e-6)
        assert values(plain.curves, split, "loss")[-1] < math.log(3) - 0.05


def test_the_package_through_its_import_path_gives_our_curves(monkeypatch):
    """schedulefree's AdamWScheduleFree as `module:Class` and ours, float64: the same
    curves, the evaluations at the averaged x included (not at y, where it trains)."""
    pytest.importorskip("schedulefree")
    hp = {"lr": 0.05, "warmup_steps": 5, "weight_decay": 0.01}
    runs = [train_run(config(optimizer=name, hyperparameters=hp, dtype="float64"), DS)
            for name in ("schedulefree:AdamWScheduleFree", "adamw-schedulefree")]
    for split in ("batch", "train", "test"):
        theirs, ours = (values(r.curves, split, "loss") for r in runs)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    monkeypatch.setattr(loop, "evaluating", lambda optimizer: nullcontext())  # at y
    at_y = train_run(config(optimizer="adamw-schedulefree", hyperparameters=hp,
                            dtype="float64"), DS)
    assert abs(values(at_y.curves, "test", "loss")[-1]
               - values(runs[1].curves, "test", "loss")[-1]) > 1e-6


MEMBERS = [{"lr": 0.05}, {"lr": 0.02, "warmup_steps": 10, "betas": [0.8, 0.99]},
           {"lr": 0.1, "weight_decay": 0.1, "r": 1.0}]


def test_vectorized_members_are_evaluated_at_x_as_their_single_runs():
    cfgs = [config(optimizer="adamw-schedulefree", hyperparameters=hp, dtype="float64",
                   model="mlp") for hp in MEMBERS]
    batched = {}
    run_vectorized(cfgs, DS, lambda r: batched.__setitem__(r.config.to_dict().__repr__(), r))
    for c in cfgs:
        single, member = train_run(c, DS), batched[c.to_dict().__repr__()]
        for split in ("batch", "train", "val", "test"):
            np.testing.assert_allclose(values(member.curves, split, "loss"),
                                       values(single.curves, split, "loss"), rtol=1e-9)


def test_a_landscape_path_is_the_evaluated_point_of_a_schedule_free_optimizer():
    """The path's points are x, where the optimizer is evaluated (our class, stepped by
    hand, then `eval()`); the package's class through its import path draws the same."""
    fn = FUNCTIONS["ravine"]
    (run,) = run_paths(fn, "adamw-schedulefree", [0.05], 30)
    w = torch.nn.Parameter(torch.tensor(fn.start, dtype=torch.float64))
    opt = AdamWScheduleFree([w], lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        fn.f(w[None]).sum().backward()
        opt.step()
    y = w.detach().tolist()
    opt.eval()
    np.testing.assert_allclose(run["path"][-1], w.detach().tolist(), rtol=1e-12)
    assert max(abs(a - b) for a, b in zip(y, run["path"][-1])) > 1e-6  # x, not y
    if importlib.util.find_spec("schedulefree") is not None:
        (theirs,) = run_paths(fn, "schedulefree:AdamWScheduleFree", [0.05], 30)
        np.testing.assert_allclose(theirs["path"], run["path"], rtol=1e-9)


@pytest.mark.parametrize("kw,message", [
    (dict(betas=(0.0, 0.999)), "Invalid betas[0]: 0.0; allowed: 0 < betas[0] < 1"),
    (dict(warmup_steps=2.5), "Invalid warmup_steps: 2.5; allowed: a whole number >= 0"),
])
def test_schedule_free_refuses_what_it_cannot_run_in_one_line(kw, message):
    with pytest.raises(ValueError) as raised:
        AdamWScheduleFree([torch.zeros(1, requires_grad=True)], **kw)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_step_in_eval_mode_is_refused_and_train_mode_steps_again():
    w = torch.nn.Parameter(torch.ones(3))
    opt = AdamWScheduleFree([w], lr=0.1)
    w.grad = torch.ones(3)
    opt.step()
    opt.eval()
    with pytest.raises(RuntimeError, match=r"eval mode; call optimizer\.train\(\)"):
        opt.step()
    opt.train()
    opt.step()
    assert opt.state[w]["step"].item() == 2
