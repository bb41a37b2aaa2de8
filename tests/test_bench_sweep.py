"""`optimlab sweep-bench` and the lab-scale case of `optimlab bench`: the peers compute
what ours compute, FLOPs are counted right, and every ratio comes from the measured rows."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from conftest import exit_code
from test_sweep import DS
from torch.utils.flop_counter import FlopCounterMode

from optimlab import models
from optimlab.analysis.records import read_summary
from optimlab.bench.lab_scale import LAB_MODELS, lab_shapes, run_lab_case
from optimlab.bench.report import format_goals, goals
from optimlab.bench.store import curves
from optimlab.bench.sweep import (
    LAYOUTS,
    PLAIN,
    best_layouts,
    flops_per_step,
    gemms,
    layout_product,
    matmul_rate,
    step_times,
    sweep_goals,
    timed_sweep,
    torch_peer,
)
from optimlab.cli import main
from optimlab.data import Dataset
from optimlab.lab.grid import settings
from optimlab.optim import OPTIMIZERS
from optimlab.train import TrainConfig, train_run

PEER_CASES = [("sgd", {"lr": 0.1}), ("momentum", {"lr": 0.1}),
              ("momentum", {"lr": 0.05, "momentum": 0.5}), ("rmsprop", {"lr": 1e-3}),
              ("rmsprop", {"lr": 1e-2, "alpha": 0.99, "eps": 1e-6}), ("adam", {"lr": 1e-3}),
              ("adam", {"lr": 3e-3, "betas": [0.5, 0.99], "weight_decay": 0.01})]


@pytest.mark.parametrize("name,hp", PEER_CASES)
def test_the_loops_torch_optimizer_computes_our_update(name, hp):
    gen = torch.Generator().manual_seed(1)
    ours = [torch.randn(7, 3, generator=gen, dtype=torch.float64, requires_grad=True)]
    theirs = [ours[0].detach().clone().requires_grad_()]
    cls, kw = torch_peer(name, hp)
    a, b = OPTIMIZERS[name](ours, **hp, foreach=False), cls(theirs, **kw)
    for _ in range(20):
        g = torch.randn(7, 3, generator=gen, dtype=torch.float64)
        ours[0].grad, theirs[0].grad = g.clone(), g.clone()
        a.step()
        b.step()
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["logreg", "mlp", "cnn"])
def test_flop_count_equals_torchs_flop_counter(name):
    model = models.build(name, (40,), 10)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(torch.randn(100, 40)),
                                          torch.zeros(100, dtype=torch.long)).backward()
    assert flops_per_step(gemms(model, (40,), 100)) == counter.get_total_flops()


def test_mlp_flops_by_hand():
    # forward, weight gradient and (except the first layer) input gradient per layer
    by_hand = 2 * 100 * (2 * 40 * 100 + 3 * 100 * 100 + 3 * 100 * 10)
    assert flops_per_step(gemms(models.build("mlp", (40,), 10), (40,), 100)) == by_hand == 8.2e6


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_computes_the_product(layout):
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)
    b = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    call, c = layout_product(a, b, layout)
    call()
    torch.testing.assert_close(c, torch.einsum("kmi,kin->kmn", a, b), rtol=1e-14, atol=1e-14)
    assert c.shape == (3, 5, 6)


def test_matmul_rate_counts_each_product_at_its_fastest_layout():
    shapes = [(8, 4, 6), (6, 8, 4), (8, 4, 6)]
    rate = matmul_rate(shapes, members=3, dtype=torch.float32, rounds=3, target_s=1e-3)
    assert len(LAYOUTS) == 8 and PLAIN in LAYOUTS
    assert rate["gflop_per_step"] == pytest.approx(3 * 2 * (2 * 8 * 4 * 6 + 6 * 8 * 4) / 1e9)
    products = rate["products"]
    assert [(p["shape"], p["count"]) for p in products] == [([8, 4, 6], 2), ([6, 8, 4], 1)]
    for p in products:
        assert set(p["ms"]) == set(LAYOUTS) and p["ms"][p["best"]] == min(p["ms"].values())
    best = sum(p["count"] * min(p["ms"].values()) for p in products)
    plain = sum(p["count"] * p["ms"][PLAIN] for p in products)
    assert rate["ms_per_step"] == pytest.approx(best) and best <= plain
    assert rate["plain_ms_per_step"] == pytest.approx(plain)
    assert rate["gflops"] == pytest.approx(rate["gflop_per_step"] / rate["ms_per_step"] * 1e3)
    assert rate["plain_gflops"] == pytest.approx(rate["gflop_per_step"] / plain * 1e3)
    chosen = best_layouts([rate, rate])
    assert [(c["best"], c["best_ms"], c["plain_ms"], c["ms"]) for c in chosen] == [
        (p["best"], p["ms"][p["best"]], p["ms"][PLAIN], p["ms"]) for p in products]


@pytest.mark.slow
def test_sweep_bench_rows_and_ratios(tmp_path):
    out = tmp_path / "sb.json"
    assert main(["sweep-bench", "--optimizers", "sgd,adam", "--lr", "1e-2", "--steps", "30",
                 "--rows", "loop,vectorized,sequential", "--threads", "1",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert list(r["rows"]) == ["loop", "vectorized", "sequential"]
    f = r["flops"]
    assert f["total_gflop"] == pytest.approx(8.2e6 * 30 * 2 / 1e9)
    for row in r["rows"].values():
        assert row["wall_s"] == statistics.median(row["wall_samples_s"])
        assert row["speedup_vs_loop"] == pytest.approx(r["rows"]["loop"]["wall_s"]
                                                       / row["wall_s"])
        assert row["fraction_of_matmul"] == pytest.approx(
            f["total_gflop"] / row["train_s"] / f["matmul_gflops"])
        assert row["fraction_of_plain_matmul"] == pytest.approx(
            f["total_gflop"] / row["train_s"] / f["matmul_plain_gflops"])
        assert row["diverged"] == 0
    agree = r["rows"]["vectorized"]["agreement_with_loop"]
    assert agree["same_diverged"] and 0 <= agree["max_abs_diff_final_test_acc"] < 0.2
    rows = r["rows"]
    assert {g["goal"]: g["value"] for g in r["goals"]} == {
        "the vectorized training ≥ 70% of the matmul rate": rows["vectorized"][
            "fraction_of_matmul"],
        "the vectorized executor ≥ 4× the sequential one": pytest.approx(
            rows["sequential"]["wall_s"] / rows["vectorized"]["wall_s"])}


def test_sweep_goals_are_the_issues_thresholds_on_the_measured_rows():
    """Each goal appears when its rows were measured, met on its side of the threshold."""
    rows = {"loop": {"wall_s": 100.0}, "command": {"wall_s": 12.5, "speedup_vs_loop": 8.0,
                                                   "fraction_of_matmul": 0.75},
            "vectorized": {"wall_s": 10.0, "fraction_of_matmul": 0.69},
            "sequential": {"wall_s": 40.0},
            "ray": {"wall_s": 11.0, "overhead_vs_vectorized": {"ratio": 1.1}}}
    got = {g["goal"]: (g["value"], g["target"], g["met"]) for g in sweep_goals(rows)}
    assert got == {"the whole `optimlab sweep` ≥ 10× the student's loop": (8.0, 10.0, False),
                   "the vectorized training ≥ 70% of the matmul rate": (0.69, 0.7, False),
                   "the vectorized executor ≥ 4× the sequential one": (4.0, 4.0, True),
                   "Ray ≤ 1.2× the vectorized executor": (1.1, 1.2, True)}
    only_command = {k: rows[k] for k in ("loop", "command")}
    assert [(g["value"], g["met"]) for g in sweep_goals(only_command)] == [(8.0, False),
                                                                           (0.75, True)]
    assert sweep_goals({"loop": rows["loop"]}) == []
    lines = format_goals(sweep_goals(rows), "measured")
    assert lines[1] == ("  NOT met   8.00 (target 10)  the whole `optimlab sweep` ≥ 10× the "
                        "student's loop")
    assert lines[4] == "  met       1.10 (target ≤ 1.2)  Ray ≤ 1.2× the vectorized executor"


def test_store_bench_curves_are_a_training_runs_and_its_rows_store_them(tmp_path):
    """The made-up curves have the points a run of the same steps has; each row stores
    every run; the JSON has both rates and their ratio."""
    cfg = TrainConfig(dataset="blobs", model="mlp", optimizer="sgd", steps=20,
                      batch_size=20, eval_every=8)
    run = train_run(cfg, DS)
    assert [(p.step, p.split, p.metric) for p in curves(20, 8)] == [
        (p.step, p.split, p.metric) for p in run.curves]
    out = tmp_path / "store.json"
    assert main(["sweep-bench", "--store", "12", "--steps", "20", "--eval-every", "8",
                 "--repeats", "2", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["settings"]["curve_points"] == 20 + 4 * 6  # evaluations at 0, 8, 16, 20
    per_run, batched = r["rows"]["per_run"], r["rows"]["batched"]
    assert (per_run["batch_runs"], len(batched["seconds"])) == (1, 2)
    for row in (per_run, batched):
        assert row["runs_per_s"] == pytest.approx(12 / statistics.median(row["seconds"]))
        assert row["runs_per_cpu_s"] == pytest.approx(12 / statistics.median(row["cpu_seconds"]))
    assert r["batched_vs_per_run"] == pytest.approx(batched["runs_per_s"] / per_run["runs_per_s"])
    [g] = r["goals"]
    assert (g["value"], g["target"], g["met"]) == (batched["runs_per_s"], 500,
                                                   batched["runs_per_s"] >= 500)


def test_timed_sweep_clocks_the_whole_sweep_and_each_run_from_its_start(tmp_path):
    """The wall clock spans the sweep; each finished run comes with the seconds since its
    start, in order, within it; the records are the sweep's summary."""
    cfg = settings({}, {"dataset": "blobs", "model": "mlp", "optimizers": "sgd,adam",
                        "lr": "1e-2,1e-1", "steps": 10, "batch_size": 20, "eval_every": 5})
    seen: list[tuple[str, float]] = []
    wall, sweep, records = timed_sweep(cfg, tmp_path, DS,
                                       lambda result, s: seen.append((result.config.label, s)))
    seconds = [s for _, s in seen]
    assert len(seen) == len(records) == 4 and seconds == sorted(seconds)
    assert 0 < seconds[0] and seconds[-1] <= wall
    assert records == read_summary(tmp_path / "summary.json")
    assert sweep.cfg is cfg


@pytest.mark.parametrize("argv,words", [
    (["--rows", "loop,spark"], "Invalid rows: spark"),
    (["--repeats", "0"], "argument --repeats: '0'; allowed: an integer >= 1"),
    (["--optimizers", "adafactor"], "Invalid optimizer 'adafactor'"),
    (["--json", "/nonexistent-dir/x.json"], "directory /nonexistent-dir does not exist"),
    (["--step-times", "-1"], "argument --step-times: '-1'; allowed: an integer >= 0"),
    (["--store", "x"], "argument --store: 'x'; allowed: an integer >= 0"),
])
def test_sweep_bench_bad_input_is_a_clean_cli_error(argv, words, capsys):
    assert exit_code(["sweep-bench", *argv]) == 2
    assert words in capsys.readouterr().err


def test_step_times_ratios_come_from_the_medians():
    gen = torch.Generator().manual_seed(0)
    split = (torch.randn(60, 12, generator=gen), torch.randint(0, 3, (60,), generator=gen))
    data = Dataset("tiny", *split, *split, *split, (12,), 3)
    sw = settings({}, {"model": "cnn", "optimizers": "sgd,adam", "lr": "1e-2,1e-1",
                       "batch_size": 10, "max_batch": 3})
    r = step_times(sw, data, rounds=3, steps=2, threads=1)
    assert (r["members"], r["rounds"], r["threads"]) == (3, 3, 1)
    ms = r["ms"]
    for key, samples in r["samples_ms"].items():
        assert len(samples) == 3 and ms[key] == statistics.median(samples) > 0
    assert ms["loop_x_members"] == pytest.approx(3 * ms["loop_step"])
    for key in ("grads", "step", "grads_vmap", "step_vmap"):
        assert r["speedup_vs_loop"][key] == pytest.approx(ms["loop_x_members"] / ms[key])
    assert r["fraction_of_matmul"]["step"] == pytest.approx(ms["bmm"] / ms["step"])
    assert r["optimizer_share"] == pytest.approx(ms["optimizer"] / ms["step"])
    assert r["fraction_of_plain_matmul"]["step"] == pytest.approx(ms["bmm_plain"] / ms["step"])
    assert ms["bmm"] <= ms["bmm_plain"]  # round by round, best ≤ plain
    assert [p["shape"] for p in r["layouts"]] == [list(s) for s in dict.fromkeys(
        gemms(models.build("cnn", (12,), 3), (12,), 10))]
    assert r["gflop_per_step"] == pytest.approx(
        3 * flops_per_step(gemms(models.build("cnn", (12,), 3), (12,), 10)) / 1e9)


def test_lab_models_are_the_built_in_ones():
    counts = {name: sum(torch.Size(s).numel() for s in lab_shapes(name)) for name in LAB_MODELS}
    assert counts == {"lab-logreg": 410, "lab-cnn": 5_210, "lab-mlp": 15_210}


@pytest.mark.parametrize("optimizer,peer", [("adam", "torch-fused"),
                                            ("rmsprop", "torch-foreach")])
def test_lab_scale_case_times_ours_against_torchs_fastest(optimizer, peer):
    case = run_lab_case(optimizer, "lab-logreg", torch.float32, repeats=3, warmup=2,
                        sample_s=1e-4)
    assert case["peer"] == peer and (case["params"], case["tensors"]) == (410, 2)
    rows = {(r["impl"], r["variant"]): r for r in case["rows"]}
    assert set(rows) == {(i, v) for i in ("ours", peer) for v in ("steady", "training")}
    assert rows["ours", "steady"]["path"] == "fused"
    for variant in ("steady", "training"):
        ours, theirs = rows["ours", variant], rows[peer, variant]
        assert ours["us"] == pytest.approx(statistics.median(ours["samples_us"]))
        assert ours["ratio_to_torch"] == pytest.approx(ours["us"] / theirs["us"])
    got = {g["goal"]: g for g in goals([case])}
    g = got[f"{optimizer} step ≤ 0.35× {peer} (lab-logreg, training)"]
    assert g["value"] == rows["ours", "training"]["ratio_to_torch"]
    assert g["met"] == (g["value"] <= 0.35)
