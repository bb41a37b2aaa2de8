"""Successive halving inside a sweep: the decision against a brute-force ranking, the same
decisions and curves on every executor, the live group compacted, kill -9 and a crash
inside a decision resumed to the same store, and bad settings refused."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import summaries
import torch
from conftest import exit_code
from pages import unpacked
from test_sweep import CLOCKS, DS, assert_same_record, one_thread  # noqa: F401 (autouse)

import optimlab
from optimlab.analysis.records import family
from optimlab.lab import executors
from optimlab.lab.grid import SweepConfig
from optimlab.lab.halving import RungScore, decide, rung_steps
from optimlab.lab.store import Store
from optimlab.lab.sweep import Sweep

# 9 η per optimizer (SGD's largest two diverge), two seeds: rungs at 10, 30, 90 of 120
# steps keep 9 -> 3 -> 1 -> 1 configurations of each
LRS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 1e3, 3e3)


def halving_cfg(executor: str = "vectorized", **kw) -> SweepConfig:
    settings = dict(dataset="blobs", model="mlp", optimizers=("sgd", "adam"), grid={"lr": LRS},
                    seeds=2, steps=120, batch_size=20, eval_every=10, dtype="float64",
                    executor=executor, halving=3, min_steps=10, max_batch=16)
    return SweepConfig(**settings | kw)


def test_rungs_sit_at_r_times_powers_of_eta_below_the_steps():
    assert rung_steps(100, 3, 3000) == (100, 300, 900, 2700)
    assert rung_steps(10, 3, 90) == (10, 30)  # 90 is the last step: no rung there
    assert rung_steps(250, 2, 250 * 8 + 1) == (250, 500, 1000, 2000)


def brute_force(eta: int, scores: list[RungScore]) -> dict[tuple[str, str], bool]:
    """Who goes on, written apart from `decide`: a point goes on when fewer than
    ceil(n/η) points of its optimizer beat it (pairwise: not diverged over diverged, then
    higher mean accuracy, then lower mean loss, then the point's text)."""
    points: dict[tuple[str, str], list[RungScore]] = {}
    for s in scores:
        points.setdefault((s.optimizer, json.dumps(s.hyperparameters, sort_keys=True)),
                          []).append(s)

    def beats(a: tuple[str, str], b: tuple[str, str]) -> bool:
        da, db = (any(s.diverged for s in points[p]) for p in (a, b))
        if da != db:
            return db
        acc = [sum(s.val_acc for s in points[p]) / len(points[p]) for p in (a, b)]
        loss = [sum(s.val_loss for s in points[p]) / len(points[p]) for p in (a, b)]
        if acc[0] != acc[1]:
            return acc[0] > acc[1]
        if loss[0] != loss[1]:
            return loss[0] < loss[1]
        return a[1] < b[1]

    out = {}
    for p in points:
        rivals = [q for q in points if q[0] == p[0] and q != p]
        n = len(rivals) + 1
        out[p] = sum(beats(q, p) for q in rivals) < max(1, math.ceil(n / eta))
    return out


@pytest.mark.parametrize("trial", range(30))
def test_the_decision_is_the_brute_force_ranking_of_the_seed_means(trial):
    rng = random.Random(trial)
    eta = rng.choice([2, 3, 4])
    scores = []
    for name, i, _ in itertools.product(("adam", "sgd"), range(rng.randint(1, 11)), range(2)):
        # coarse accuracies: ties are common, and are broken by the loss, then the text
        scores.append(RungScore(name, {"lr": 10.0 ** -i}, rng.choice([0.25, 0.5, 0.75]),
                                rng.choice([0.5, 1.0]), rng.random() < 0.1))
    decisions = decide(40, eta, scores)
    expected = brute_force(eta, scores)
    assert {(d["optimizer"], json.dumps(d["hyperparameters"], sort_keys=True)): d["survives"]
            for d in decisions} == expected
    for name in ("adam", "sgd"):
        ranks = [d["rank"] for d in decisions if d["optimizer"] == name]
        assert sorted(ranks) == list(range(1, len(ranks) + 1))
        survivors = [d for d in decisions if d["optimizer"] == name and d["survives"]]
        assert len(survivors) == max(1, math.ceil(len(ranks) / eta))
        assert all(d["rank"] <= len(survivors) for d in survivors)


def test_a_point_is_scored_by_the_mean_of_its_seeds():
    scores = [RungScore("adam", {"lr": 1.0}, 0.9, 1.0), RungScore("adam", {"lr": 1.0}, 0.1, 3.0),
              RungScore("adam", {"lr": 2.0}, 0.6, 1.0), RungScore("adam", {"lr": 2.0}, 0.6, 1.0)]
    first, second = decide(10, 2, scores)
    assert (first["hyperparameters"], first["val_acc"], first["survives"]) == ({"lr": 2.0}, 0.6,
                                                                               True)
    assert (second["val_acc"], second["val_loss"], second["survives"]) == (0.5, 2.0, False)


def stored(out) -> dict[str, tuple[dict, list]]:
    """run name -> (record without clocks, curves without clocks)."""
    return {r["run"]: ({k: v for k, v in r["summary"].items() if k not in CLOCKS},
                       [(p.step, p.split, p.metric, p.value) for p in r["curves"]])
            for r in Store(out).runs(done_only=False)}


def assert_same_runs(a: dict, b: dict, tol: float = 1e-9) -> None:
    assert a.keys() == b.keys()
    for name, (record, curves) in a.items():
        record_, curves_ = b[name]
        assert_same_record(record, record_, rel=tol)
        assert [c[:3] for c in curves] == [c[:3] for c in curves_], name
        for c, c_ in zip(curves, curves_, strict=True):
            assert c[3] == pytest.approx(c_[3], rel=tol, abs=tol, nan_ok=True), (name, c)


def decisions(out) -> list[tuple]:
    return [(d["rung"], d["optimizer"], d["hyperparameters"]["lr"], d["rank"], d["survives"],
             d["diverged"]) for d in Store(out).rungs()]


@pytest.fixture(scope="module")
def vectorized(tmp_path_factory):
    """The sweep halved by the vectorized executor: its folder."""
    out = tmp_path_factory.mktemp("vectorized")
    Sweep(halving_cfg(), out, dataset=DS).run()
    return out


def test_halving_stops_the_weak_and_keeps_them_as_pruned_at_their_rung(vectorized):
    extra = summaries.summary(vectorized)
    summary = extra["runs"]
    assert len(summary) == 2 * 9 * 2
    by_rung = {rung: [r for r in summary if r["pruned_at"] == rung] for rung in (10, 30, 90)}
    finished = [r for r in summary if r["pruned_at"] is None and not r["diverged"]]
    for r in summary:
        assert r["steps_trained"] == (r["pruned_at"] or (r["diverged_step"] - 1 if r["diverged"]
                                                         else 120))
    # per optimizer: 9 points; 3 go on from the rung at 10, 1 from 30, and 1 from 90
    # (SGD's two diverging η end at their divergence, so fewer are pruned at 10)
    diverged = [r for r in summary if r["diverged"]]
    assert len(by_rung[10]) + len(diverged) == 2 * 6 * 2
    assert len(by_rung[30]) == 2 * 2 * 2 and len(by_rung[90]) == 0
    assert len(finished) == 2 * 1 * 2
    assert extra["member_steps"] == sum(r["steps_trained"] for r in summary)
    assert extra["training"] == []
    assert extra["member_steps"] < 2 * 9 * 2 * 120 * 0.3
    rows = Store(vectorized).rungs()
    assert [(d["rung"], d["optimizer"]) for d in rows] == sorted(
        (d["rung"], d["optimizer"]) for d in rows)
    assert sum(d["survives"] for d in rows if d["rung"] == 10) == 2 * 3
    # the point that ended is the one the selection picks, and it won every rung
    best = {r["optimizer"]: r["hyperparameters"]["lr"] for r in summary if r["edge"] is not None}
    assert len(best) == 2
    for name, lr in best.items():
        assert all(d["survives"] for d in rows if d["optimizer"] == name
                   and d["hyperparameters"]["lr"] == lr)


@pytest.mark.parametrize("executor,threads", [("sequential", 1), ("vectorized", 2),
                                              ("processes", 1)])
def test_every_executor_takes_the_same_decisions_and_curves(vectorized, tmp_path, executor,
                                                            threads):
    torch.set_num_threads(threads)  # 2: the vectorized groups train side by side
    Sweep(halving_cfg(executor), tmp_path, dataset=DS).run()
    assert decisions(tmp_path) == decisions(vectorized)
    assert_same_runs(stored(tmp_path), stored(vectorized))


def test_a_rung_compacts_the_live_group_to_its_survivors(monkeypatch, tmp_path):
    seen = []
    real = executors.Group.keep

    def keep(self, keys):
        before = (len(self.alive), self.flat.shape[0])
        alive = real(self, keys)
        scalars = [len(v) for opt, _, _ in self.segments for v in opt.scalars.values()]
        states = [x.shape[0] for opt, _, _ in self.segments for xs in opt.state.values()
                  for x in xs if x is not None]
        seen.append((before, len(self.alive), self.flat.shape[0], sum(
            b - a for _, a, b in self.segments), scalars, states))
        return alive

    monkeypatch.setattr(executors.Group, "keep", keep)
    Sweep(halving_cfg(optimizers=("adam",), grid={"lr": LRS[:7]}), tmp_path, dataset=DS).run()
    # one group of 7 points x 2 seeds: 3 points go on from the rung at 10, 1 from 30
    assert [s[:4] for s in seen] == [((14, 14), 6, 6, 6), ((6, 6), 2, 2, 2),
                                     ((2, 2), 2, 2, 2)]
    for _, members, _, _, scalars, states in seen:
        assert set(scalars) <= {members} and states and set(states) == {members}


def test_a_crash_inside_a_decision_leaves_the_rung_undecided_and_resumes_alike(
        vectorized, tmp_path, monkeypatch):
    real = Store._write

    def write(self, batch):
        real(self, batch)  # the stopped runs written, their transaction not yet committed
        if any(json.loads(summary).get("pruned_at") is not None for _, _, summary, *_ in batch):
            raise KeyboardInterrupt

    monkeypatch.setattr(Store, "_write", write)
    with pytest.raises(KeyboardInterrupt):
        Sweep(halving_cfg(), tmp_path, dataset=DS).run()
    store = Store(tmp_path)
    assert store.rungs() == []  # nothing of the rung: its transaction was rolled back
    assert [r["summary"]["pruned_at"] for r in store.runs() if "pruned_at" in r["summary"]] == []
    monkeypatch.setattr(Store, "_write", real)
    Sweep(halving_cfg(), tmp_path, dataset=DS).run()
    assert decisions(tmp_path) == decisions(vectorized)
    assert_same_runs(stored(tmp_path), stored(vectorized))


def sweep_argv(npz, out) -> list[str]:
    return ["sweep", "--dataset", f"npz:{npz}", "--optimizers", "adam,sgd", "--search",
            "random", "--trials", "9", "--lr", "1e-4:10", "--steps", "120", "--eval-every",
            "10", "--batch-size", "20", "--halving", "--min-steps", "10", "--dtype", "float64",
            "--threads", "1", "--out", str(out)]


# The child of the kill tests: the CLI, waiting (a file appears) once its N-th rung
# decision is stored, the runs kept there already training towards the next.
_KILL_AFTER_A_RUNG = """
import sys, time
from pathlib import Path
import optimlab.lab.store as store
real, seen = store.Store.record_rung, []
def record_rung(self, *args):
    real(self, *args)
    seen.append(args)
    if len(seen) == int(sys.argv[2]):
        Path(sys.argv[1]).touch()
        time.sleep(600)
store.Store.record_rung = record_rung
from optimlab.cli import main
raise SystemExit(main(sys.argv[3:]))
"""


def kill_9_after_rungs(argv: list[str], flag, n: int = 1) -> None:
    """Run the CLI with `argv` and kill -9 it once its `n`-th rung decision is stored."""
    proc = subprocess.Popen([sys.executable, "-c", _KILL_AFTER_A_RUNG, str(flag), str(n),
                             *argv], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_9_after_a_rung_then_resume_gives_the_uninterrupted_summary(tmp_path, npz):
    killed, whole, flag = tmp_path / "killed", tmp_path / "whole", tmp_path / "flag"
    kill_9_after_rungs(sweep_argv(npz, killed), flag)
    assert {d["rung"] for d in Store(killed).rungs()} == {10}
    assert exit_code(sweep_argv(npz, killed)) == 0
    assert exit_code(sweep_argv(npz, whole)) == 0
    assert decisions(killed) == decisions(whole)
    assert_same_runs(stored(killed), stored(whole))
    clean = [{k: v for k, v in r.items() if k not in CLOCKS} for r in summaries.runs(killed)]
    assert clean == [{k: v for k, v in r.items() if k not in CLOCKS}
                     for r in summaries.runs(whole)]
    assert summaries.summary(killed)["rungs"] == summaries.summary(whole)["rungs"]


@pytest.mark.parametrize("argv,match", [
    (["--halving", "1"], "argument --halving: '1'; allowed: an integer >= 2"),
    (["--halving", "x"], "argument --halving: 'x'; allowed: an integer >= 2"),
    (["--halving", "--min-steps", "120"], "Invalid --min-steps 120; allowed: below --steps 120"),
    (["--min-steps", "10"], "Invalid --min-steps 10 without --halving"),
    (["--halving", "--min-steps", "15"], "Invalid --min-steps 15: the rungs rank on the "
                                         "validation score"),
])
def test_bad_halving_settings_exit_2_with_one_line(tmp_path, capsys, argv, match):
    base = ["sweep", "--optimizers", "adam", "--steps", "120", "--eval-every", "10",
            "--out", str(tmp_path / "o")]
    assert exit_code([*base, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert match in err[-1] and "Traceback" not in "\n".join(err)


def test_halving_from_python_refuses_eta_below_2():
    with pytest.raises(ValueError, match="Invalid --halving 1; allowed: an integer >= 2"):
        halving_cfg(halving=1)


def test_a_resume_with_other_halving_settings_is_refused_naming_them(tmp_path):
    Sweep(halving_cfg(steps=30, optimizers=("adam",), grid={"lr": LRS[:3]}), tmp_path,
          dataset=DS)
    for change, name in (({"halving": 2}, "halving 3 there, 2 now"),
                         ({"min_steps": 20}, "min_steps 10 there, 20 now")):
        with pytest.raises(ValueError, match=name):
            Sweep(halving_cfg(steps=30, optimizers=("adam",), grid={"lr": LRS[:3]}, **change),
                  tmp_path, dataset=DS)


def test_python_halving_with_selection_reruns_the_last_survivor(tmp_path):
    optimlab.sweep("logreg", DS, "adam", grid={"lr": "1e-3:1"}, search="random", trials=9,
                   halving=3, min_steps=10, select="val", seeds=2, steps=40, batch_size=20,
                   eval_every=10, out=tmp_path, report=False)
    runs = Store(tmp_path).runs()
    grid = [r["summary"] for r in runs if "grid" in r["roles"]]
    assert sorted(r.get("pruned_at") or 40 for r in grid) == [10] * 6 + [30] * 2 + [40]
    last = next(r for r in grid if "pruned_at" not in r)
    tuned = [r["config"] for r in runs if "tuned" in r["roles"]]
    assert sorted(c["seed"] for c in tuned) == [0, 1]
    assert all(c["hyperparameters"] == last["hyperparameters"] for c in tuned)
    shots = [r["summary"] for r in runs if "one-shot" in r["roles"]]
    assert [r["steps"] for r in shots] == [40, 40]  # the defaults train in full
    top = summaries.summary(tmp_path)
    assert top["member_steps"] == sum(r["steps_trained"] for r in top["runs"])
    # the tuned seed 0 is the grid's last survivor: one run, counted once
    assert top["member_steps"] == 6 * 10 + 2 * 30 + 40 + 2 * 40 + 40


def test_the_rung_diagram_ends_each_line_at_its_rung_and_the_page_shows_it(vectorized):
    from optimlab.analysis.store import read_rungs, read_runs
    from optimlab.report.rungs import rung_lines
    from optimlab.report.sweep import render

    runs = read_runs(vectorized)
    lines = rung_lines(runs)
    assert {name: len(configs) for name, configs in lines.items()} == {"sgd": 9, "adam": 9}
    ends: dict[tuple, tuple] = {}  # (optimizer, η) -> (rung, the last step of its seeds)
    for r in runs:
        at = (family(r["config"]), r["config"]["hyperparameters"]["lr"])
        last = max(ends.get(at, (None, 0))[1], r["summary"]["steps"])
        ends[at] = (r["summary"].get("pruned_at"), last)
    for name, configs in lines.items():
        for line in configs:
            rung, last = ends[name, float(line["label"].removeprefix("lr="))]
            assert line["pruned_at"] == rung
            # a line ends at its rung, or where its seeds ended (120, or a divergence: the
            # run is evaluated at its last step before it)
            assert line["steps"][-1] == (rung or last)
    assert sum(line["pruned_at"] is None and not line["diverged"]
               for configs in lines.values() for line in configs) == 2
    assert {d["rung"] for d in read_rungs(vectorized)} == {10, 30, 90}
    # the page's charts, one per optimizer, draw the same lines: a pruned one grey, ending
    # at its rung with a cross; the rungs dashed
    page = render(vectorized).read_text()
    assert "Successive halving: rung diagram" in page and 'alt="rung diagram"' not in page
    assert not (vectorized / "rungs.png").exists()
    figures = {m.group(1): json.loads(m.group(2)) for m in re.finditer(
        r'id="(rungs-\d)" class="chart figure" data-figure="(.*?)"></div>', unpacked(page))}
    assert sorted(figures) == ["rungs-0", "rungs-1"]
    for figure, configs in zip(figures.values(), lines.values(), strict=True):
        assert sorted(s["x0"] for s in figure["layout"]["shapes"]) == [10, 30, 90]
        for trace, line in zip(figure["data"], configs, strict=True):
            assert trace["x"] == line["steps"]
            assert trace["y"] == pytest.approx([100 * a for a in line["acc"]], rel=1e-4)
            pruned = line["pruned_at"] is not None or line["diverged"]
            assert (trace["line"]["color"] == "#8c8c8c") == pruned
            assert trace["marker"]["size"][-1] == (7 if pruned else 0)
    page = render(vectorized, png=True).read_text()
    assert 'alt="rung diagram"' in page and (vectorized / "rungs.png").stat().st_size > 0


def test_sweep_bench_halving_prints_the_figures_of_both_sweeps(tmp_path, npz, capsys):
    path = tmp_path / "bench.json"
    assert exit_code(["sweep-bench", "--dataset", f"npz:{npz}", "--optimizers", "adam",
                      "--halving", "--trials", "9", "--steps", "40", "--eval-every", "10",
                      "--batch-size", "20", "--threads", "1", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    # rungs at 10 and 30 of 40: 9 runs to 10, 3 to 30, 1 to the end
    assert (result["halving"]["member_steps"], result["full"]["member_steps"]) == (
        9 * 10 + 3 * 20 + 1 * 10, 9 * 40)
    assert result["member_steps_fraction"] == pytest.approx(160 / 360)
    assert result["wall_fraction"] == pytest.approx(result["halving"]["wall_s"]
                                                    / result["full"]["wall_s"])
    pick, best = result["halving"]["picked"]["adam"], result["full"]["picked"]["adam"]
    quality = result["pick_quality"]["adam"]
    assert quality["same_configuration"] == (pick["hyperparameters"] == best["hyperparameters"])
    assert quality["test_acc_points_vs_best"] == pytest.approx(
        100 * (pick["test_acc"] - best["test_acc"]))
    out = capsys.readouterr().out
    assert "member-steps: 160 of 360 (44.4%)" in out and "wall clock:" in out
    assert exit_code(["sweep-bench", "--halving", "1"]) == 2


def test_an_interrupt_between_rungs_keeps_the_decided_rung_and_resumes_alike(
        vectorized, tmp_path, monkeypatch):
    real = executors.Group.step

    def step(self, t, on_finish):
        if t == 20:  # after the rung at 10 was decided, before the one at 30
            raise KeyboardInterrupt
        real(self, t, on_finish)

    monkeypatch.setattr(executors.Group, "step", step)
    with pytest.raises(KeyboardInterrupt):
        Sweep(halving_cfg(), tmp_path, dataset=DS).run()
    store = Store(tmp_path)
    assert {d["rung"] for d in store.rungs()} == {10}
    # summary.json as the rung left it: the best so far, and the runs the rung kept
    top = summaries.summary(tmp_path)
    kept = [f"{d['optimizer']}-lr{d['hyperparameters']['lr']:g}-seed{s}"
            for d in store.rungs() if d["survives"] for s in (0, 1)]
    assert sorted(top["training"]) == sorted(kept)
    assert {r["run"] for r in top["runs"]}.isdisjoint(kept)
    kept = store.checkpoint_steps()
    assert kept and set(kept.values()) <= {10, 19}  # the survivors, at the rung or later
    monkeypatch.setattr(executors.Group, "step", real)
    Sweep(halving_cfg(), tmp_path, dataset=DS).run()
    assert decisions(tmp_path) == decisions(vectorized)
    assert_same_runs(stored(tmp_path), stored(vectorized))


def test_more_trials_into_a_halving_sweep_are_refused_naming_trials(tmp_path):
    def cfg(trials: int) -> SweepConfig:
        return halving_cfg(optimizers=("adam",), grid={}, ranges={"lr": (1e-3, 1.0)},
                           search="random", trials=trials, steps=30)

    Sweep(cfg(3), tmp_path, dataset=DS)
    with pytest.raises(ValueError, match="trials 3 there, 4 now"):
        Sweep(cfg(4), tmp_path, dataset=DS)
