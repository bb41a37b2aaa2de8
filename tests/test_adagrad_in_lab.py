"""AdaGrad, registered by its specification alone, in every command: compare, sweep,
landscape, bench. None of them names it; its η, grid keys and bench peer come from its
specification (and the lab policy's fallbacks)."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

from optimlab.bench.cases import BYTES_PER_PARAM, implementations
from optimlab.cli import main
from optimlab.lab.policy import APPLIES, DEFAULT_LR
from optimlab.optim import SPECS, Adagrad

TINY = ["--model", "logreg", "--steps", "20", "--eval-every", "10"]


def test_the_lab_derives_its_settings_from_the_specification():
    assert DEFAULT_LR["adagrad"] == SPECS["adagrad"].defaults["lr"] == 1e-2
    assert {k for k, names in APPLIES.items() if "adagrad" in names} == {
        "lr", "lr_decay", "eps", "weight_decay"}
    assert BYTES_PER_PARAM["adagrad"] == 20  # w read+write, g read, s read+write
    assert BYTES_PER_PARAM["adam"] == 28 and BYTES_PER_PARAM["sgd"] == 12
    names = [i.name for i in implementations("adagrad")]
    assert names[:3] == ["ours-reference", "ours-foreach", "ours-fused"]
    assert "torch-foreach" in names


def test_compare(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--optimizers", "adagrad,sgd", "--seeds", "1", *TINY,
                 "--out", str(out)]) == 0
    rows = {r["optimizer"]: r for r in json.loads((out / "summary.json").read_text())}
    assert rows["adagrad"]["hyperparameters"]["lr"] == 1e-2
    assert not rows["adagrad"]["diverged"]


def test_sweep_varies_lr_decay_vectorized_like_single_runs(tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", "--optimizers", "adagrad", "--lr", "0.01,0.1", "--lr-decay", "0,0.1",
                 *TINY, "--dtype", "float64", "--out", str(out)]) == 0
    assert main(["sweep", "--optimizers", "adagrad", "--lr", "0.01,0.1", "--lr-decay", "0,0.1",
                 *TINY, "--dtype", "float64", "--executor", "sequential",
                 "--out", str(tmp_path / "seq")]) == 0
    runs = []
    for folder in (out, tmp_path / "seq"):
        with sqlite3.connect(folder / "sweep.sqlite") as conn:
            rows = conn.execute("SELECT config, summary FROM runs WHERE status = 'done'")
            runs.append({json.loads(c)["hyperparameters"].__repr__(): json.loads(s)
                         for c, s in rows})
    vectorized, sequential = runs
    assert len(vectorized) == 4 and vectorized.keys() == sequential.keys()
    assert any("lr_decay" in k for k in vectorized)
    for k, rec in vectorized.items():
        assert rec["final_train_loss"] == pytest.approx(sequential[k]["final_train_loss"],
                                                        rel=1e-9)


def test_landscape(tmp_path):
    out = tmp_path / "land"
    assert main(["landscape", "--function", "ravine", "--optimizers", "adagrad,sgd",
                 "--steps", "20", "--lr", "0.05", "--out", str(out)]) == 0
    runs = json.loads((out / "paths.json").read_text())["functions"]["ravine"]["runs"]
    assert len(runs["adagrad"]["path"]) == 21


def test_bench(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--json", str(out), "--optimizers", "adagrad", "--models", "2x300",
                 "--repeats", "2", "--no-memory"]) == 0
    case = json.loads(out.read_text())["cases"][0]
    assert case["optimizer"] == "adagrad"
    assert "ours-fused" in capsys.readouterr().out


def test_the_bench_peer_does_our_update_at_our_defaults():
    """AdaGrad's peer is torch.optim.Adagrad with the same update: one step agrees."""
    peer_cls, peer_kw = SPECS["adagrad"].peer
    ours, theirs = (torch.ones(5, requires_grad=True) for _ in range(2))
    for p in (ours, theirs):
        p.grad = torch.arange(5.0)
    Adagrad([ours]).step()
    peer_cls([theirs], **peer_kw).step()
    torch.testing.assert_close(ours, theirs)
