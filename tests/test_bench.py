"""`optimlab bench` on tiny sizes: the record's structure, and numbers derived from the samples."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from conftest import exit_code
from optim_db import DB, NAMES

from optimlab.bench import BYTES_PER_PARAM, BenchConfig, cases, format_table, goals, run_bench
from optimlab.bench.run import model_shapes
from optimlab.cli import main
from optimlab.optim import OPTIMIZERS


def minimum_bytes_per_param(optimizer: str, itemsize: int = 4) -> int:
    """Counted from the optimizer itself, not from the bench's table: one step must read
    the parameter and its gradient and write the parameter, and read and write every
    per-element state tensor the optimizer keeps (found by taking a step)."""
    p = torch.zeros(64, requires_grad=True)
    p.grad = torch.ones(64)
    opt = OPTIMIZERS[optimizer]([p], lr=1e-3)
    opt.step()
    per_element = [v for v in opt.state[p].values()
                   if isinstance(v, torch.Tensor) and v.numel() == p.numel()]
    return itemsize * (3 + 2 * len(per_element))


@pytest.mark.parametrize("optimizer", NAMES)
def test_bytes_per_parameter_match_an_independent_count(optimizer):
    # the design's table (SGD 12, Momentum 20, RMSprop 20, Adam 28 bytes per fp32
    # parameter), each optimizer's in its row
    assert BYTES_PER_PARAM[optimizer] == minimum_bytes_per_param(optimizer)
    assert BYTES_PER_PARAM[optimizer] == DB[optimizer].bytes_per_param

TINY = BenchConfig(optimizers=("momentum", "rmsprop"), models=("3x700",), repeats=3,
                   warmup=1, sample_s=1e-4, memory=False)


@pytest.fixture(scope="module")
def record():
    return run_bench(TINY)


def test_every_implementation_is_timed_side_by_side(record):
    assert record["complete"] and [c["optimizer"] for c in record["cases"]] == ["momentum",
                                                                                "rmsprop"]
    impls = {c["optimizer"]: [r["impl"] for r in c["rows"]] for c in record["cases"]}
    ours = ["ours-reference", "ours-foreach", "ours-fused"]
    assert impls["momentum"] == ours + ["torch-single", "torch-foreach", "torch-fused"]
    assert impls["rmsprop"] == ours + ["torch-single", "torch-foreach"]  # torch has no fused
    for case in record["cases"]:
        assert (case["params"], case["tensors"]) == (2100, 3)
        paths = {r["impl"]: r["path"] for r in case["rows"]}
        assert paths["ours-fused"] == "fused" and paths["ours-reference"] == "reference"
        assert all(len(r["samples_ms"]) == 3 for r in case["rows"])


def test_speeds_and_roofline_come_from_the_measured_samples(record):
    for case in record["cases"]:
        stream_s = case["stream"]["ms"] / 1e3
        stream_gbs = 3 * 4 * case["params"] / stream_s / 1e9  # a += b: 3 fp32 accesses
        assert case["stream"]["gbs"] == pytest.approx(stream_gbs, rel=1e-12)
        assert case["bytes_per_param"] == minimum_bytes_per_param(case["optimizer"])
        traffic = minimum_bytes_per_param(case["optimizer"]) * case["params"]
        for row in case["rows"]:
            seconds = statistics.median(row["samples_ms"]) / 1e3
            assert row["ms"] == pytest.approx(seconds * 1e3, rel=1e-12)
            assert row["gbs"] == pytest.approx(traffic / seconds / 1e9, rel=1e-12)
            assert row["roofline"] == pytest.approx(row["gbs"] / stream_gbs, rel=1e-9)
            assert row["ms"] > 0


def _case(optimizer, model, ms):
    return {"optimizer": optimizer, "model": model, "rows": [
        {"impl": impl, "ms": v, "roofline": 0.5} for impl, v in ms.items()]}


def test_goals_are_ratios_of_the_right_rows():
    cases = [_case("adam", "25M", {"ours-fused": 20.0, "torch-fused": 25.0,
                                   "torch-foreach": 100.0}),
             _case("rmsprop", "25M", {"ours-fused": 20.0, "torch-single": 50.0,
                                      "torch-foreach": 80.0}),
             _case("sgd", "small200", {"ours-fused": 2.0, "torch-foreach": 1.0}),
             _case("nadam", "25M", {"ours-fused": 20.0, "torch-single": 70.0,
                                    "torch-foreach": 50.0})]
    got = {g["goal"]: (g["value"], g["met"]) for g in goals(cases)}
    assert got["nadam fused ≥ its peer's fastest step (25M)"] == (2.5, True)
    assert got["adam fused ≥ torch's fused Adam (25M)"] == (1.25, True)
    assert got["rmsprop fused ≥ 3× torch's fastest RMSprop (25M)"] == (2.5, False)
    assert got["adam fused ≥ 95% of roofline (25M)"] == (0.5, False)
    assert got["sgd fused step ≤ torch foreach step (small200)"] == (0.5, False)


def test_an_optimizer_without_a_fused_path_is_judged_against_its_peers_fastest():
    cases = [_case("muon", "matrices25M", {"ours-reference": 900.0, "ours-foreach": 800.0,
                                           "torch-single": 1000.0, "torch-fused": 960.0}),
             _case("muon", "25M", {"ours-foreach": 30.0, "torch-fused": 15.0})]
    got = {g["goal"]: (g["value"], g["met"]) for g in goals(cases)}
    assert got == {"muon foreach ≥ its peer's fastest (matrices25M)": (1.2, True),
                   "muon foreach ≥ its peer's fastest (25M)": (0.5, False)}
    default = _case("muon", "25M", {"ours-foreach": 30.0, "ours-default": 20.0,
                                    "torch-fused": 15.0})
    assert [(g["goal"], g["value"]) for g in goals([default])] == [
        ("muon default ≥ its peer's fastest (25M)", 0.75)]


def test_the_matrix_model_is_25m_parameters_of_hidden_matrices():
    _, shapes = model_shapes("matrices25M")
    assert all(len(s) == 2 for s in shapes)
    assert sum(a * b for a, b in shapes) == 8 * 12 * 512 ** 2 == 25_165_824


def test_cli_writes_json_and_prints_a_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--json", str(out), "--optimizers", "sgd", "--models", "2x300",
                 "--repeats", "2", "--no-memory"]) == 0
    saved = json.loads(out.read_text())
    assert saved["complete"] and saved["cases"][0]["optimizer"] == "sgd"
    table = capsys.readouterr().out
    assert "ours-fused" in table and "torch-fused" in table
    assert format_table(saved) in table


@pytest.mark.parametrize("argv,words", [
    (["--models", "huge"], "Invalid model: 'huge'"),
    (["--optimizers", "adafactor"], "Invalid optimizer: 'adafactor'"),
    (["--repeats", "0"], "argument --repeats: '0'; allowed: an integer >= 1"),
    (["--dtype", "float16"], "Invalid dtype: 'float16'"),
    (["--threads", "0"], "argument --threads: '0'; allowed: an integer >= 1"),
    (["--json", "/nonexistent-dir/x.json"], "folder /nonexistent-dir does not exist"),
])
def test_bad_input_is_a_clean_cli_error(argv, words, capsys):
    assert exit_code(["bench", *argv]) == 2
    assert words in capsys.readouterr().err


def test_a_peer_package_not_installed_is_a_clean_cli_error(monkeypatch, capsys):
    """Schedule-Free's peer is the schedulefree package's class, an optional dependency:
    without it the bench says so in one line, before timing anything."""
    def missing(path):
        raise ValueError(f"no module named {path.split(':')[0]!r}")

    monkeypatch.setattr(cases, "import_object", missing)
    assert exit_code(["bench", "--optimizers", "adamw-schedulefree", "--models", "2x300"]) == 2
    err = capsys.readouterr().err
    assert "Invalid optimizer 'adamw-schedulefree' for the bench" in err
    assert "schedulefree:AdamWScheduleFree" in err and len(err.strip().splitlines()) == 1


def test_replay_bench_steps_fully_without_the_replay_to_the_same_values():
    """`optimlab.bench.replay`'s contender without the replay takes a full step every
    time, ours one full step and then replays, and both reach the same parameters."""
    from optimlab.bench.lab_scale import contenders
    from optimlab.bench.replay import without_replay

    ours = contenders("adam")["ours"]
    finals, full_steps = [], []
    for impl in (ours, without_replay(ours)):
        params = [torch.ones(3, 2, requires_grad=True), torch.ones(2, requires_grad=True)]
        opt = impl.make(params)
        count = 0
        full_step = opt._step_no_grad

        def counted(closure, full_step=full_step):
            nonlocal count
            count += 1
            return full_step(closure)

        opt._step_no_grad = counted
        for t in range(5):
            for p in params:
                p.grad = torch.full_like(p, 0.1 * (t + 1))
            opt.step()
        finals.append([p.detach().clone() for p in params])
        full_steps.append(count)
    assert full_steps == [1, 5]
    for a, b in zip(*finals, strict=True):
        assert torch.equal(a, b)


def test_replay_bench_prints_both_ratios_and_refuses_unknown_names(capsys):
    from optimlab.bench.replay import main as replay_main

    assert replay_main(["--optimizers", "sgd", "--models", "lab-logreg", "--repeats", "1"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| sgd |")]
    assert [r[2].strip() for r in rows] == ["steady", "training"]
    for r in rows:
        replay, no_replay, over = (float(x) for x in r[3:])
        assert over == pytest.approx(replay / no_replay, rel=0.05, abs=0.01)  # each rounded
    with pytest.raises(SystemExit) as stop:
        replay_main(["--models", "lab-vit"])
    assert stop.value.code == 2
    assert "Invalid --models: 'lab-vit'; allowed: lab-logreg, lab-cnn, lab-mlp" in \
        capsys.readouterr().err
