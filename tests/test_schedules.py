"""Learning-rate schedules: each spec's factors against its closed form, the η a run
actually steps with, the records, and the flags of compare and sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from summaries import runs as summary_runs
from test_sweep import DS as BLOBS
from test_train import DS, config

from optimlab.cli import main
from optimlab.lab.executors import run_sequential, run_vectorized
from optimlab.train import TrainConfig, batch_indices, init_model, schedules, train_run

STEPS = 40
# spec -> f(t) for t = 1..STEPS, written from the definitions in the module docstring.
CLOSED_FORMS = {
    "constant": lambda t: 1.0,
    "inv-sqrt": lambda t: 1 / math.sqrt(t),
    "step:7:0.5": lambda t: 0.5 ** ((t - 1) // 7),
    "cosine": lambda t: (1 + math.cos(math.pi * (t - 1) / STEPS)) / 2,
    "warmup:10": lambda t: min(t / 10, 1.0),
}


@pytest.mark.parametrize("spec", CLOSED_FORMS)
def test_factors_equal_the_closed_form(spec):
    got = schedules.factors(spec, STEPS)
    want = [CLOSED_FORMS[spec](t) for t in range(1, STEPS + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_inv_sqrt_is_kingma_and_bas_alpha_over_sqrt_t():
    """α_t = α/√t, t counted from 1: steps 1, 4, 9, 100 take α, α/2, α/3, α/10."""
    f = schedules.factors("inv-sqrt", 100)
    assert [f[t - 1] for t in (1, 4, 9, 100)] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 10],
                                                                rel=1e-15)


class LrRecorder:
    """The η of each param group as `optimizer.step()` used it at step t."""

    def __init__(self):
        self.lrs: list[float] = []

    def on_step_end(self, step, model, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("spec", CLOSED_FORMS)
def test_a_run_steps_with_eta_times_the_factor_and_records_the_schedule(spec):
    rec = LrRecorder()
    cfg = config(steps=STEPS, hyperparameters={"lr": 0.3}, schedule=spec)
    result = train_run(cfg, DS, callbacks=[rec])
    want = [0.3 * CLOSED_FORMS[spec](t) for t in range(1, STEPS + 1)]
    np.testing.assert_allclose(rec.lrs, want, rtol=1e-12)
    assert result.record["schedule"] == spec


def test_a_scheduled_sgd_run_follows_the_scheduled_update_exactly():
    """float64 logistic regression, SGD under inv-sqrt: the weights equal a loop written
    here with w ← w − (η/√t) g."""
    ds64 = type(DS)(**{**DS.__dict__, **{f"x_{s}": getattr(DS, f"x_{s}").double()
                                          for s in ("train", "val", "test")}})
    cfg = config(steps=STEPS, dtype="float64", schedule="inv-sqrt", eval_every=STEPS)
    final = {}

    class Keep:
        def on_step_end(self, step, model, optimizer):
            if step == STEPS:
                final.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    train_run(cfg, ds64, callbacks=[Keep()])
    model = init_model("logreg", ds64, cfg.seed, torch.float64)
    batches = batch_indices(len(ds64.y_train), cfg.batch_size, cfg.seed)
    for t in range(1, STEPS + 1):
        idx = next(batches)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(ds64.x_train[idx]), ds64.y_train[idx]).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 / math.sqrt(t) * p.grad
    for k, v in model.state_dict().items():
        torch.testing.assert_close(final[k], v, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec", ["", "linear", "inv-sqrt:2", "step:0:0.1", "step:10:0",
                                  "step:10:1.5", "step:ten:0.1", "warmup:1", "warmup:-3", 5])
def test_bad_specs_are_refused_naming_the_value_and_what_is_allowed(spec):
    with pytest.raises(ValueError) as e:
        TrainConfig(schedule=spec)
    assert repr(spec) in str(e.value) and "inv-sqrt" in str(e.value)


def test_the_canonical_spelling_is_what_configs_keep():
    assert TrainConfig(schedule=" step:0100:1e-1").schedule == "step:100:0.1"


def test_the_vectorized_executor_trains_scheduled_runs_as_their_single_runs():
    cfgs = [TrainConfig(dataset="blobs", model="mlp", optimizer=name, hyperparameters={"lr": lr},
                        steps=30, batch_size=20, eval_every=10, dtype="float64", schedule=s)
            for name, lr, s in (("sgd", 0.1, "cosine"), ("adam", 1e-2, "warmup:5"),
                                ("adam", 1e-2, "constant"))]
    got, want = [], []
    run_vectorized(cfgs, BLOBS, got.append)
    run_sequential(cfgs, BLOBS, want.append)
    by_config = {json.dumps(r.config.to_dict()): r for r in want}
    assert len(got) == 3
    for r in got:
        ref = by_config[json.dumps(r.config.to_dict())]
        np.testing.assert_allclose([p.value for p in r.curves], [p.value for p in ref.curves],
                                   rtol=1e-9)


def exit_code(argv):
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_schedule_flag_is_checked_and_recorded(command, tmp_path, capsys):
    npz = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    np.savez(npz, x=(rng.normal(0, 1, (200, 4)) + y[:, None]).astype(np.float32), y=y)
    argv = [command, "--dataset", f"npz:{npz}", "--model", "logreg", "--optimizers", "sgd",
            "--steps", "20", "--eval-every", "10", "--batch-size", "10", "--seeds", "1",
            "--out", str(tmp_path / "bad")]
    assert exit_code([*argv, "--schedule", "linear"]) == 2
    err = capsys.readouterr().err
    assert "schedule" in err and "'linear'" in err and "Traceback" not in err
    argv[-1] = str(tmp_path / "ok")
    assert exit_code([*argv, "--schedule", "step:5:0.5"]) == 0
    records = summary_runs(tmp_path / "ok")
    assert records and all(r["schedule"] == "step:5:0.5" for r in records)
