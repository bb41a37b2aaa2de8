"""Your model, your data, your optimizer: defined only in this file, run through `compare`
and `sweep` end to end from the CLI (as `test_own_code:NAME`) and from Python."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from summaries import runs as summary_runs
from summaries import summary
from torch import nn

from optimlab.analysis.store import read_runs
from optimlab.cli import main

STEPS, EVAL = 24, 8


class SignSGD(torch.optim.Optimizer):
    """w ← w − η sign(g): an optimizer the lab has never heard of."""

    def __init__(self, params, lr: float = 0.01):
        if not lr > 0:
            raise ValueError(f"Invalid lr: {lr}; allowed: > 0")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(6, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x)))


def make_model() -> nn.Module:
    return TwoLayer()


def make_batchnorm_model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def make_data():
    """Three Gaussian blobs in 6-D: a torch Dataset for train, a tensor pair for test."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    centres = torch.randn(3, 6, generator=g) * 1.5
    x = centres[y] + torch.randn(300, 6, generator=g)
    return torch.utils.data.TensorDataset(x[:240], y[:240]), (x[240:], y[240:])


def make_regression_data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=g)
    y = x @ torch.linspace(-1, 1, 6) + 0.1 * torch.randn(200, generator=g)
    return (x[:160], y[:160]), (x[160:], y[160:])


def read_curves(out: Path) -> dict[str, dict[tuple[int, str, str], float]]:
    curves: dict[str, dict[tuple[int, str, str], float]] = defaultdict(dict)
    with (out / "curves.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            curves[r["run"]][int(r["step"]), r["split"], r["metric"]] = float(r["value"])
    return curves


def compare_cli(out: Path, optimizers: str, *extra: str) -> int:
    return main(["compare", "--dataset", "test_own_code:make_data", "--model",
                 "test_own_code:make_model", "--optimizers", optimizers, "--steps", str(STEPS),
                 "--eval-every", str(EVAL), "--seeds", "1", "--batch-size", "16",
                 "--out", str(out), *extra])


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("own") / "cmp"
    assert compare_cli(out, "sgd(lr=0.1), torch.optim:SGD(lr=0.1), adam, "
                            "adam(betas=(0.5, 0.999)), mine=test_own_code:SignSGD(lr=0.02)",
                       "--target-acc", "0.6") == 0
    return out


def test_own_model_data_and_optimizer_run_through_compare_from_the_cli(compared):
    records = summary_runs(compared)
    labels = [r["label"] for r in records]
    assert labels == ["sgd(lr=0.1)", "SGD(lr=0.1)", "adam", "adam(betas=(0.5, 0.999))", "mine"]
    mine = records[-1]
    assert (mine["optimizer"], mine["hyperparameters"]) == ("test_own_code:SignSGD",
                                                            {"lr": 0.02})
    assert mine["model"] == "test_own_code:make_model"
    assert mine["steps"] == STEPS and not mine["diverged"]
    curves = read_curves(compared)["mine-seed0"]
    assert curves[STEPS, "train", "loss"] < 0.5 * curves[0, "train", "loss"]
    assert (compared / "report.html").is_file()


def test_torch_sgd_and_builtin_sgd_give_the_same_curves(compared):
    curves = read_curves(compared)
    ours, theirs = curves["sgd(lr=0.1)-seed0"], curves["SGD(lr=0.1)-seed0"]
    assert ours.keys() == theirs.keys() and len(ours) > STEPS
    assert max(abs(ours[k] - theirs[k]) for k in ours) < 1e-6
    assert ours[STEPS, "batch", "loss"] != ours[1, "batch", "loss"]  # it did train


def test_a_beta1_variant_is_recorded_in_the_summary_and_the_report(compared):
    records = {r["label"]: r for r in summary_runs(compared)}
    assert records["adam(betas=(0.5, 0.999))"]["hyperparameters"] == {
        "lr": 0.01, "betas": [0.5, 0.999]}
    assert records["adam"]["hyperparameters"] == {"lr": 0.01}
    page = (compared / "report.html").read_text()
    assert "adam(betas=(0.5, 0.999))" in page and "betas=[0.5, 0.999]" in page
    curves = read_curves(compared)
    a, b = curves["adam-seed0"], curves["adam(betas=(0.5, 0.999))-seed0"]
    assert a[1, "batch", "loss"] == b[1, "batch", "loss"]  # same start, same batches ...
    assert a[STEPS, "batch", "loss"] != b[STEPS, "batch", "loss"]  # ... other β₁


def test_the_recorded_command_reruns_the_same_families(compared, tmp_path, capsys):
    meta = json.loads((compared / "config.json").read_text())
    assert "mine=test_own_code:SignSGD(lr=0.02)" in meta["command"]
    assert meta["settings"]["optimizers"][-1] == "mine=test_own_code:SignSGD(lr=0.02)"


def test_bad_entries_and_paths_exit_2_before_training(tmp_path, capsys):
    for optimizers, match in (
            ("adam(beta=0.5)", "allowed: lr, betas, eps"),
            ("test_own_code:Nope", "module 'test_own_code' has no attribute 'Nope'"),
            ("test_own_code:TwoLayer", "not a torch.optim.Optimizer subclass"),
            ("test_own_code:SignSGD(lr=-1)", "Invalid lr: -1; allowed: > 0"),
            ("no_such_module_xyz:Opt", "no module named 'no_such_module_xyz'")):
        with pytest.raises(SystemExit) as info:
            compare_cli(tmp_path / "x", optimizers)
        assert info.value.code == 2
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]  # after argparse's usage lines
        assert last.startswith("optimlab compare: error:") and match in last
        assert "Traceback" not in err
    assert main(["compare", "--dataset", "test_own_code:make_data", "--model",
                 "test_own_code:make_regression_data", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "optimlab compare: error: Invalid model 'test_own_code:make_regression_data'" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y" / "summary.json").exists()


def test_regression_from_the_cli(tmp_path):
    out = tmp_path / "reg"
    assert main(["compare", "--dataset", "test_own_code:make_regression_data", "--model", "mlp",
                 "--task", "regression", "--optimizers", "sgd(lr=0.05), adam", "--steps", "40",
                 "--eval-every", "10", "--seeds", "1", "--batch-size", "16",
                 "--target-loss", "0.5", "--out", str(out)]) == 0
    records = summary_runs(out)
    for r in records:
        assert r["task"] == "regression" and r["final_test_acc"] is None
        assert r["final_test_loss"] < 0.5 < read_curves(out)[r["run"]][0, "test", "loss"]
        assert r["time_to_target_step"] is not None


def sweep_cli(out: Path, *extra: str) -> int:
    return main(["sweep", "--dataset", "test_own_code:make_data", "--model",
                 "test_own_code:make_model", "--steps", "16", "--eval-every", "8",
                 "--batch-size", "16", "--out", str(out), *extra])


def test_own_model_data_and_optimizer_run_through_sweep_from_the_cli(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert sweep_cli(out, "--optimizers", "sgd, mine=test_own_code:SignSGD",
                     "--lr", "0.01,0.1", "--select", "val", "--seeds", "2") == 0
    err = capsys.readouterr().err
    # the grid and one-shot phase (η 0.01 and 0.1 under seed 0, η 0.01 under seed 1), then
    # the tuned re-runs that are not stored yet
    assert ("vectorized executor: test_own_code:SignSGD has no batched update; "
            "3 run(s) of mine train one by one instead") in err
    records = summary_runs(out)
    mine = [r for r in records if r["label"] == "mine"]
    # grid (2 η, seed 0), one-shot (class default η 0.01, seeds 0-1), tuned (best η, seeds
    # 0-1); the one-shot's seed 0 is the grid's η=0.01 run
    assert sorted({r["hyperparameters"]["lr"] for r in mine}) == [0.01, 0.1]
    assert {r["optimizer"] for r in mine} == {"test_own_code:SignSGD"}
    assert {r["seed"] for r in mine} == {0, 1}
    assert all(r["model"] == "test_own_code:make_model" and not r["diverged"] for r in records)
    assert (out / "report.html").is_file()


def test_a_functional_user_model_trains_vectorized_exactly_as_one_by_one(tmp_path, capsys):
    """float64: the vmap path (functional_call) against single runs, member by member."""
    runs = {}
    for executor in ("vectorized", "sequential"):
        out = tmp_path / executor
        assert sweep_cli(out, "--optimizers", "sgd, adam", "--lr", "0.01,0.1",
                         "--dtype", "float64", "--executor", executor) == 0
        assert main(["export", "csv", str(out)]) == 0  # the store keeps float64 values exact
        runs[executor] = read_curves(out)
    assert "vectorized executor" not in capsys.readouterr().err  # nothing fell back
    assert runs["vectorized"].keys() == runs["sequential"].keys() and len(runs["sequential"]) == 4
    for run, curve in runs["sequential"].items():
        batched = runs["vectorized"][run]
        assert batched.keys() == curve.keys()
        assert max(abs(batched[k] - v) / max(abs(v), 1e-3) for k, v in curve.items()) < 1e-9


def test_a_model_with_in_place_buffer_updates_falls_back_and_says_why(tmp_path, capsys):
    out = tmp_path / "bn"
    assert main(["sweep", "--dataset", "test_own_code:make_data", "--model",
                 "test_own_code:make_batchnorm_model", "--optimizers", "sgd", "--lr", "0.1",
                 "--steps", "8", "--eval-every", "4", "--batch-size", "16",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert ("vectorized executor: model test_own_code:make_batchnorm_model updates its "
            "buffers in place (1.running_mean, 1.running_var, 1.num_batches_tracked") in err
    (record,) = summary_runs(out)
    assert record["steps"] == 8 and not record["diverged"]


def test_own_model_data_and_optimizer_through_the_python_api(tmp_path):
    import optimlab

    train, test = make_data()
    result = optimlab.compare(model=make_model, data=(train, test),
                              optimizers=["sgd(lr=0.1)", "adam(betas=(0.5, 0.999))", SignSGD],
                              steps=STEPS, eval_every=EVAL, batch_size=16, seeds=2,
                              out=tmp_path / "api")
    assert [r["label"] for r in result.rows] == ["sgd(lr=0.1)", "adam(betas=(0.5, 0.999))",
                                                 "SignSGD"] * 2
    assert result.rows[2]["optimizer"] == "test_own_code:SignSGD"
    assert result.out == tmp_path / "api" and result.report == tmp_path / "api" / "report.html"
    assert summary_runs(result.out) == result.rows
    # the notebook gets the comparisons the folder and the report hold: 3 pairs, and the
    # 2 seeds decide nothing
    assert result.comparisons == summary(result.out)["comparisons"]
    assert {(c["a"], c["b"]) for c in result.comparisons} == {
        ("sgd(lr=0.1)", "adam(betas=(0.5, 0.999))"), ("sgd(lr=0.1)", "SignSGD"),
        ("adam(betas=(0.5, 0.999))", "SignSGD")}
    assert {c["verdict"] for c in result.comparisons} == {"too few seeds"}
    frame = result.to_pandas()
    assert list(frame["label"]) == [r["label"] for r in result.rows]
    cli = read_curves(result.out)
    assert len(result.curves) == sum(len(c) for c in cli.values())
    row = result.curves[-1]
    assert cli[row["run"]][row["step"], row["split"], row["metric"]] == row["value"]
    fig = result.plot()
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    # the label gives the betas: the legend does not repeat them
    adam = [t for t in legend if t.startswith("adam(betas=(0.5, 0.999))")]
    assert adam and not any("betas=[0.5, 0.999]" in t for t in adam)
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"

    swept = optimlab.sweep(model=TwoLayer(), data=make_data, optimizers=["sgd", SignSGD],
                           grid={"lr": [0.01, 0.1]}, steps=16, eval_every=8, batch_size=16,
                           out=tmp_path / "api-sweep")
    assert sorted((r["label"], r["hyperparameters"]["lr"]) for r in swept.rows) == [
        ("SignSGD", 0.01), ("SignSGD", 0.1), ("sgd", 0.01), ("sgd", 0.1)]
    assert (swept.out / "sweep.sqlite").is_file()
    # the curves come from the store (a sweep writes curves.csv only on demand)
    stored = [(r["run"], *p) for r in read_runs(swept.out) for p in r["curves"]]
    assert [tuple(c.values()) for c in swept.curves] == stored and stored


def test_the_python_api_refuses_bad_input_before_training(tmp_path):
    import optimlab

    with pytest.raises(ValueError, match=r"Invalid hyperparameter 'beta' of adam"):
        optimlab.compare(model=make_model, data=make_data, optimizers=["adam(beta=0.5)"],
                         out=tmp_path / "a")
    with pytest.raises(TypeError, match=r"Invalid data of type int"):
        optimlab.compare(model=make_model, data=3, out=tmp_path / "b")
    with pytest.raises(ValueError, match=r"Invalid alpha: 0.7; allowed: a number in \(0, 0.5\)"):
        optimlab.compare(model=make_model, data=make_data, alpha=0.7, out=tmp_path / "d")
    with pytest.raises(ValueError, match=r"Invalid executor 'processes' with Python objects"):
        optimlab.sweep(model=make_model, data=make_data, executor="processes",
                       out=tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abd")


def test_importing_optimlab_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, optimlab; print('torch' in sys.modules, callable(optimlab.compare))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]


def test_landscape_takes_entries(tmp_path, capsys):
    out = tmp_path / "ls"
    assert main(["landscape", "--function", "rosenbrock", "--steps", "60", "--out", str(out),
                 "--optimizers", "sgd(lr=0.001), torch.optim:SGD(lr=0.001), "
                                 "slow=adam(betas=(0.5, 0.999)), mine=test_own_code:SignSGD"]) == 0
    runs = json.loads((out / "paths.json").read_text())["functions"]["rosenbrock"]["runs"]
    assert list(runs) == ["sgd(lr=0.001)", "SGD(lr=0.001)", "slow", "mine"]
    assert runs["sgd(lr=0.001)"]["lr_source"] == "entry"
    ours, theirs = runs["sgd(lr=0.001)"]["path"], runs["SGD(lr=0.001)"]["path"]
    assert len(ours) == len(theirs) == 61
    assert max(abs(a - b) for p, q in zip(ours, theirs) for a, b in zip(p, q)) < 1e-12
    assert runs["slow"]["hyperparameters"] == {"betas": [0.5, 0.999]}
    assert runs["slow"]["lr_source"] == "grid" and runs["mine"]["optimizer"] == (
        "test_own_code:SignSGD")
    assert main(["landscape", "--optimizers", "adam(beta1=0.5)", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "Invalid hyperparameter 'beta1' of adam" in capsys.readouterr().err


def test_compare_reads_a_toml_config_and_flags_win(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'dataset = "test_own_code:make_data"\n'
        'model = "test_own_code:make_model"\n'
        'optimizers = ["sgd", "slow=adam(betas=(0.5, 0.999))", "test_own_code:SignSGD"]\n'
        'steps = 12\neval_every = 6\nbatch_size = 16\nseeds = 2\ntarget_acc = "none"\n'
        '[lr]\nsgd = 0.05\nSignSGD = 0.002\n')
    out = tmp_path / "cfg"
    assert main(["compare", "--config", str(config), "--seeds", "1", "--out", str(out)]) == 0
    records = summary_runs(out)
    assert [(r["label"], r["hyperparameters"], r["seed"]) for r in records] == [
        ("sgd", {"lr": 0.05}, 0), ("slow", {"lr": 0.01, "betas": [0.5, 0.999]}, 0),
        ("SignSGD", {"lr": 0.002}, 0)]
    assert all(r["steps"] == 12 and r["target_acc"] is None for r in records)
    config.write_text('optimizers = "sgd"\nlearning_rate = 0.1\n')
    assert main(["compare", "--config", str(config), "--out", str(tmp_path / "bad")]) == 2


def test_sweep_variants_are_families_of_their_own(tmp_path):
    out = tmp_path / "variants"
    assert sweep_cli(out, "--optimizers", "adam, slow=adam(betas=(0.5, 0.999))",
                     "--lr", "0.003,0.03", "--select", "val") == 0
    records = summary_runs(out)
    slow = [r for r in records if r["label"] == "slow"]
    assert slow and all(r["hyperparameters"]["betas"] == [0.5, 0.999] for r in slow)
    assert all("betas" not in r["hyperparameters"] for r in records if r["label"] == "adam")
    page = (out / "report.html").read_text()
    assert "slow" in page and "betas=[0.5, 0.999]" in page


@pytest.mark.slow
def test_the_processes_executor_runs_a_user_optimizer_as_the_sequential_one(tmp_path):
    curves = {}
    for executor in ("processes", "sequential"):
        out = tmp_path / executor
        assert sweep_cli(out, "--optimizers", "mine=test_own_code:SignSGD", "--lr",
                         "0.01,0.03", "--executor", executor) == 0
        assert main(["export", "csv", str(out)]) == 0
        curves[executor] = read_curves(out)
    assert curves["processes"] == curves["sequential"] and len(curves["sequential"]) == 2


def test_a_regression_sweep_selects_on_validation_loss(tmp_path):
    out = tmp_path / "reg-sweep"
    assert main(["sweep", "--dataset", "test_own_code:make_regression_data", "--model", "mlp",
                 "--task", "regression", "--optimizers", "sgd", "--lr", "0.001,0.05",
                 "--steps", "20", "--eval-every", "10", "--batch-size", "16",
                 "--select", "val", "--seeds", "2", "--out", str(out)]) == 0
    records = summary_runs(out)
    grid = {r["hyperparameters"]["lr"]: r["final_val_loss"] for r in records if r["seed"] == 0}
    best = min(grid, key=grid.get)
    tuned = [r for r in records if r["hyperparameters"]["lr"] == best]
    assert sorted(r["seed"] for r in tuned) == [0, 1]  # the best val loss, re-run with seeds
    assert all(r["task"] == "regression" and r["final_val_acc"] is None for r in records)
    assert (out / "report.html").is_file()
