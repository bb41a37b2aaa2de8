"""compare --tune with equal budgets, and the fairness audit printed, stored and shown."""

from __future__ import annotations

import html
import json

import pytest
from conftest import exit_code
from summaries import runs as summary_runs

from optimlab.analysis.audit import audit, audit_lines, undecide
from optimlab.analysis.comparisons import comparisons
from optimlab.analysis.selection import best_per_optimizer
from optimlab.cli import main
from optimlab.commands.compare import tuning_lines
from optimlab.lab.audit import decays
from optimlab.lab.entries import parse_list
from optimlab.lab.grid import SweepConfig
from optimlab.lab.store import Store
from optimlab.lab.sweep import Sweep
from optimlab.optim import SPECS
from optimlab.report.claims import UNDECIDED, lecture_claims
from optimlab.report.sweep import render as render_sweep

STEPS = 20


def argv(npz, out, *extra: str) -> list[str]:
    return ["compare", "--dataset", f"npz:{npz}", "--model", "logreg", "--steps", str(STEPS),
            "--eval-every", "10", "--batch-size", "8", "--target-acc", "none",
            "--out", str(out), *extra]


def trials_of(store_dir, label: str) -> list[dict]:
    return [r for r in Store(store_dir).runs() if "grid" in r["roles"]
            and (r["config"]["label"] or r["config"]["optimizer"]) == label]


def test_compare_tune_gives_every_optimizer_the_same_budget_over_its_declared_space(
        npz, tmp_path, capsys):
    """Three trials of STEPS steps each, for every optimizer, counted from the stored
    trials; every key of the declared space searched, but adam's η, which --lr fixes."""
    out = tmp_path / "tuned"
    assert main(argv(npz, out, "--optimizers", "sgd,adam", "--seeds", "2", "--tune",
                     "--tune-trials", "3", "--lr", "adam=0.05")) == 0
    tuning = json.loads((out / "config.json").read_text())["tuning"]
    for label in ("sgd", "adam"):
        trials = trials_of(out / "tune", label)
        assert len(trials) == 3 and {r["config"]["steps"] for r in trials} == {STEPS}
        assert (tuning[label]["trials"], tuning[label]["budget"]) == (3, 3 * STEPS)
    assert {r["config"]["hyperparameters"]["lr"] for r in trials_of(out / "tune", "adam")} \
        == {0.05}
    assert tuning["adam"]["source"] == "given" and "lr" in tuning["adam"]["untuned"]
    assert tuning["adam"]["tuned"] == sorted(set(SPECS["adam"].search) - {"lr"})
    assert tuning["sgd"]["tuned"] == sorted(SPECS["sgd"].search)
    # the comparison runs each optimizer's best trial on validation
    best = best_per_optimizer(trials_of(out / "tune", "sgd") + trials_of(out / "tune", "adam"))
    compared = {r["optimizer"]: r["hyperparameters"] for r in summary_runs(out)}
    assert compared == {n: best[n]["config"]["hyperparameters"] for n in ("sgd", "adam")}
    found = json.loads((out / "summary.json").read_text())["audit"]
    assert found["budgets"] == {n: {"trials": 3, "steps_per_trial": STEPS, "budget": 3 * STEPS}
                                for n in ("sgd", "adam")}
    assert found["seeds"] == {"sgd": 2, "adam": 2}
    # η tuned for sgd, held at --lr for adam: flagged, and the pair undecided for it
    assert {"kind": "untuned", "entries": ["adam"],
            "text": "η tuned for sgd but held fixed for adam"} in found["findings"]
    pair = found["undecided"][0]
    assert (pair["a"], pair["b"]) == ("sgd", "adam")
    assert "η tuned for one of sgd, adam and held fixed for the other" in pair["reasons"]
    # printed, stored and shown: the same audit
    terminal = capsys.readouterr().out
    assert f"sgd: tuned η {tuning['sgd']['values']['lr']:g} (3 trials × {STEPS} steps)" \
        in terminal
    assert f"adam: η 0.05 as given, tuned beta1 {tuning['adam']['values']['beta1']:g}" in terminal
    assert all(line in terminal for line in audit_lines(found))
    page = (out / "report.html").read_text()
    assert all(html.escape(f["text"]) in page for f in found["findings"])


def test_tuning_lines_say_what_was_fixed_and_when_every_trial_diverged():
    given = {"lr": 0.1, "source": "given", "trials": 0, "steps_per_trial": None,
             "values": {}, "all_diverged": False}
    diverged = given | {"source": "default", "lr": 0.2, "trials": 4, "steps_per_trial": 50,
                        "all_diverged": True}
    assert tuning_lines({"sgd": given, "momentum": diverged}) == [
        "sgd: η 0.1 as given, not tuned (budget 0)",
        "momentum: every trial diverged (4 trials × 50 steps); the comparison uses η 0.2 "
        "(default)"]


def test_the_default_comparison_audit_says_eta_is_untuned_for_all_and_keeps_verdicts(
        npz, tmp_path, capsys):
    """No --tune: every η is the lab's default, a budget of 0 for all; nothing is unfair
    between them, so no verdict is made undecided."""
    out = tmp_path / "plain"
    assert main(argv(npz, out, "--optimizers", "sgd,adam", "--seeds", "2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    found = summary["audit"]
    assert found["findings"][0]["text"].startswith(
        "η is the lab's fixed default per optimizer (sgd 0.2, adam 0.01), untuned for all: "
        "equal budgets of 0 trials")
    assert found["undecided"] == []
    assert all(r["verdict"] != UNDECIDED for r in summary["comparisons"])
    assert "audit: η is the lab's fixed default" in capsys.readouterr().out


def _records(label: str, optimizer: str, accs: list[float]) -> list[dict]:
    return [{"run": f"{label}-seed{i}", "optimizer": optimizer, "label": label, "seed": i,
             "hyperparameters": {"lr": 0.1}, "final_test_acc": a, "final_test_loss": 1 - a,
             "final_train_loss": 1 - a, "steps_planned": 100, "steps": 100, "target_acc": None,
             "time_to_target_step": None, "final_val_loss": 1 - a, "diverged": False}
            for i, a in enumerate(accs)]


def _row(label: str, **kw) -> dict:
    return {"lr": 0.1, "source": "tuned", "tuned": ["lr"], "untuned": [], "trials": 4,
            "steps_per_trial": 100, "budget": 400, "edge": {}, "space": {"lr": [0.01, 1.0]},
            "values": {"lr": 0.1}} | kw


def test_an_eta_on_its_range_edge_makes_that_optimizers_verdicts_undecided():
    """Adam clearly beats sgd and momentum on 8 seeds; with adam's η on the edge of its
    range, its two pairs are undecided (the test's verdict kept), sgd vs momentum stands."""
    records = (_records("adam", "adam", [0.9 + i / 100 for i in range(8)])
               + _records("sgd", "sgd", [0.5 + i / 100 for i in range(8)])
               + _records("momentum", "momentum", [0.3 + i / 100 for i in range(8)]))
    rows = comparisons(records)
    assert {r["verdict"] for r in rows if r["measure"] == "final_test_acc"} == {"a better"}
    table = {"adam": _row("adam", edge={"lr": "high"}, values={"lr": 1.0}),
             "sgd": _row("sgd"), "momentum": _row("momentum")}
    found = audit(table, records)
    judged = undecide(rows, found)
    for r in judged:
        adam = "adam" in (r["a"], r["b"])
        assert r["verdict"] == (UNDECIDED if adam else "a better")
        assert (r.get("test_verdict"), "reasons" in r) == (("a better", True) if adam else
                                                           (None, False))
    assert "adam's tuned η=1 lies on the high edge of its range 0.01..1" in judged[0]["reasons"][0]
    # the claims panel reads the same audit: Adam faster than SGD is undecided
    claim = lecture_claims(records, audit=found)[0]
    assert claim.verdict == UNDECIDED and claim.evidence[0].startswith("fairness audit: adam's")
    assert lecture_claims(records)[0].verdict != UNDECIDED  # without the audit: decided


def test_unequal_budgets_or_steps_are_flagged_and_undecide_the_pair():
    records = _records("adam", "adam", [0.9] * 3) + _records("sgd", "sgd", [0.5] * 3)
    found = audit({"adam": _row("adam"), "sgd": _row("sgd", trials=2, budget=200)}, records)
    assert found["findings"][0]["text"] == ("unequal tuning budgets, trials × steps per trial: "
                                            "adam 4 × 100 = 400; sgd 2 × 100 = 200")
    assert found["undecided"][0]["reasons"] == [
        "unequal tuning budgets (adam 4 × 100 = 400; sgd 2 × 100 = 200)"]
    longer = [r | {"steps_planned": 200} for r in records[3:]]
    found = audit({"adam": _row("adam"), "sgd": _row("sgd")}, records[:3] + longer)
    assert found["undecided"][0]["reasons"] == ["unequal steps per run (adam [100], sgd [200])"]


def test_schedules_and_an_optimizers_own_decay_are_named():
    records = _records("adagrad", "adagrad", [0.5]) + _records("sgd", "sgd", [0.5])
    table = {"adagrad": _row("adagrad"), "sgd": _row("sgd")}
    found = audit(table, records, schedule="cosine", decays=decays(parse_list("adagrad,sgd")))
    texts = [f["text"] for f in found["findings"] if f["kind"] == "schedule"]
    assert texts[0] == "every run decays η by the schedule cosine (the same for all)"
    assert texts[1].startswith("adagrad decays its step inside its own update: η/(√s + ε)")
    assert len(texts) == 2 and found["undecided"] == []


def test_sweep_select_val_states_each_budget_and_flags_unequal_ones(tmp_path):
    from test_sweep import DS

    cfg = SweepConfig(dataset="blobs", model="logreg", optimizers=("sgd", "adam"),
                      grid={"lr": (0.03, 0.3)}, per_optimizer={"sgd": {"lr": (0.01, 0.03, 0.3)}},
                      steps=STEPS, batch_size=20, eval_every=10, select="val", seeds=2)
    sweep = Sweep(cfg, tmp_path, dataset=DS)
    sweep.run()
    found = json.loads((tmp_path / "summary.json").read_text())["audit"]
    assert found == sweep.audit
    grid = {n: len(trials_of(tmp_path, n)) for n in ("sgd", "adam")}
    assert grid == {"sgd": 3, "adam": 2}
    assert found["budgets"] == {n: {"trials": k, "steps_per_trial": STEPS, "budget": k * STEPS}
                                for n, k in grid.items()}
    assert found["findings"][0].get("unequal") and found["seeds"] == {"sgd": 2, "adam": 2}
    edges = [f["entries"][0] for f in found["findings"] if f["kind"] == "edge"]
    assert edges == [n for n, c in sweep.selected.items() for _ in c["edge"]]
    page = render_sweep(tmp_path, sweep.finished).read_text()
    assert all(html.escape(f["text"]) in page for f in found["findings"])


@pytest.mark.parametrize(("extra", "message"), [
    (["--tune-trials", "3"], "Invalid --tune-trials 3 without --tune; allowed: --tune "
                             "--tune-trials N"),
    (["--tune", "--tune-trials", "0"], "argument --tune-trials: '0'; allowed: an integer >= 1")])
def test_bad_tune_trials_are_refused_before_training(npz, tmp_path, capsys, extra, message):
    assert exit_code(argv(npz, tmp_path / "o", *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_the_notebook_api_tunes_and_reads_the_comparisons_and_audit_summary_json_holds(
        tmp_path):
    from test_sweep import DS

    import optimlab

    result = optimlab.compare("logreg", DS, "sgd,adam", steps=STEPS, eval_every=10,
                              batch_size=20, seeds=2, target_acc=None, tune_trials=2,
                              out=tmp_path, report=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result.comparisons == summary["comparisons"] and result.audit == summary["audit"]
    assert result.audit["budgets"]["sgd"] == {"trials": 2, "steps_per_trial": STEPS,
                                              "budget": 2 * STEPS}
    assert len(trials_of(tmp_path / "tune", "adam")) == 2


def test_a_suite_with_tune_trials_tunes_every_optimizer_with_equal_budgets_and_says_so(
        tmp_path):
    from test_suite import sign_workload

    import optimlab
    from optimlab.lab.suite import Workload

    broken = Workload("broken", "logreg", ("one part",), target_acc=0.5, steps=10)
    summary = optimlab.suite([broken, sign_workload("small", 3, 20, 1)], ["sgd", "adam"],
                             seeds=2, tune_trials=2, out=tmp_path)
    w, failed = summary["workloads"]  # a workload that fails is reported; the rest go on
    assert failed["status"] == "failed"
    assert failed["error"].startswith("TypeError: Invalid data of workload 'broken'")
    assert w["status"] == "finished" and w["tuned"]
    trials = {n: trials_of(tmp_path / "small" / "tune", n) for n in ("sgd", "adam")}
    assert {n: len(t) for n, t in trials.items()} == {"sgd": 2, "adam": 2}
    assert w["audit"]["budgets"] == {n: {"trials": 2, "steps_per_trial": 20, "budget": 40}
                                     for n in ("sgd", "adam")}
    # the comparison ran each optimizer's best trial, and its verdicts are the audited ones
    best = best_per_optimizer(trials["sgd"] + trials["adam"])
    assert {n: r["hyperparameters"] for n, r in w["optimizers"].items()} == {
        n: best[n]["config"]["hyperparameters"] for n in ("sgd", "adam")}
    stored = json.loads((tmp_path / "small" / "summary.json").read_text())
    assert w["comparisons"] == stored["comparisons"]
    page = (tmp_path / "report.html").read_text()
    assert "tuned on every workload by 2 random-search trials" in page
    untuned = optimlab.suite([sign_workload("small", 3, 20, 1)], ["sgd", "adam"], seeds=2,
                             out=tmp_path / "plain")
    assert not untuned["workloads"][0]["tuned"] and "Not tuned" in (
        tmp_path / "plain" / "report.html").read_text()
