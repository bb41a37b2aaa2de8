"""Every optimizer of the table (optim_db.py) in every command: compare, sweep, landscape,
bench. None of them names one; the η, grid keys, search space and bench peer of each come
from its specification (and the lab policy's fallbacks), so a new optimizer's row runs
here as it is."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch
from optim_db import DB, NAMES
from summaries import runs as summary_runs

from optimlab.bench.cases import implementations
from optimlab.cli import main
from optimlab.lab.policy import APPLIES, COMPARE_LR, DEFAULT_LR

TINY = ["--model", "logreg", "--steps", "20", "--eval-every", "10"]
ALL = ",".join(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_lab_derives_its_settings_from_the_specification(name):
    spec = DB[name].spec
    if name not in COMPARE_LR:  # the policy's fallback: the class's default
        assert DEFAULT_LR[name] == spec.defaults["lr"]
    swept = {k for k, names in APPLIES.items() if name in names}
    assert {"lr", "weight_decay"} <= swept <= {*spec.flat_keys(tuple(spec.hyperparameters))}
    impls = [i.name for i in implementations(name)]
    assert impls[:2] == ["ours-reference", "ours-foreach"]
    assert ("ours-fused" in impls) == bool(spec.kernel)
    assert any(i.startswith("torch-") for i in impls)


def test_compare_runs_every_optimizer(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--optimizers", ALL, "--seeds", "1", *TINY, "--out", str(out)]) == 0
    rows = {r["optimizer"]: r for r in summary_runs(out)}
    assert list(rows) == NAMES
    for name, row in rows.items():
        assert row["hyperparameters"]["lr"] == DEFAULT_LR[name]
        assert not row["diverged"], name


def _done_runs(folder) -> dict[str, dict]:
    with sqlite3.connect(folder / "sweep.sqlite") as conn:
        rows = conn.execute("SELECT config, summary FROM runs WHERE status = 'done'")
        return {c: json.loads(s) for c, s in rows}


def test_sweep_of_every_optimizer_vectorized_equals_single_runs(tmp_path):
    """A random search over each optimizer's declared search space (every key it varies per
    member): the vectorized executor's members equal the runs trained one by one."""
    argv = ["sweep", "--optimizers", ALL, "--search", "random", "--trials", "2", *TINY,
            "--dtype", "float64"]
    assert main([*argv, "--out", str(tmp_path / "vec")]) == 0
    assert main([*argv, "--executor", "sequential", "--out", str(tmp_path / "seq")]) == 0
    vectorized, sequential = _done_runs(tmp_path / "vec"), _done_runs(tmp_path / "seq")
    assert vectorized.keys() == sequential.keys()
    assert {json.loads(c)["optimizer"] for c in vectorized} == set(NAMES)
    assert len(vectorized) == 2 * len(NAMES)
    for config, rec in vectorized.items():
        assert rec["final_train_loss"] == pytest.approx(sequential[config]["final_train_loss"],
                                                        rel=1e-9), config


def test_landscape_runs_every_optimizer(tmp_path):
    out = tmp_path / "land"
    assert main(["landscape", "--function", "ravine", "--optimizers", ALL,
                 "--steps", "20", "--lr", "0.05", "--out", str(out)]) == 0
    runs = json.loads((out / "paths.json").read_text())["functions"]["ravine"]["runs"]
    assert list(runs) == NAMES
    assert all(len(run["path"]) == 21 for run in runs.values())


def test_bench_runs_every_optimizer(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--json", str(out), "--optimizers", ALL, "--models", "2x300",
                 "--repeats", "1", "--no-memory"]) == 0
    cases = json.loads(out.read_text())["cases"]
    assert [c["optimizer"] for c in cases] == NAMES
    assert "ours-fused" in capsys.readouterr().out


SAME_UPDATE = [name for name in NAMES if DB[name].peer and DB[name].peer.translate is dict]


@pytest.mark.parametrize("name", SAME_UPDATE)
def test_the_bench_peer_does_our_update_at_our_defaults(name):
    """Where the row's torch.optim peer takes our keyword arguments as they are, the
    specification's bench peer does our update at our defaults: one step agrees."""
    peer_cls, peer_kw = DB[name].spec.peer
    ours, theirs = (torch.ones(5, requires_grad=True) for _ in range(2))
    for p in (ours, theirs):
        p.grad = torch.arange(5.0)
    DB[name].cls([ours]).step()
    peer_cls([theirs], **peer_kw).step()
    torch.testing.assert_close(ours, theirs)
