"""The sweep: grids, the vectorized executor against single runs, the store, resume, report."""

from __future__ import annotations

import csv
import json
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import done_count, exit_code, kill_9_after_a_finished_run
from summaries import runs as summary_runs

from optimlab.cli import main
from optimlab.data import Dataset
from optimlab.lab import executors
from optimlab.lab import store as sweep_store
from optimlab.lab import sweep as sweep_module
from optimlab.lab.executors import run_processes, run_vectorized
from optimlab.lab.grid import SweepConfig, hyperparameter_sets, parse_values, settings
from optimlab.lab.store import Store
from optimlab.lab.sweep import Sweep
from optimlab.optim.batched import BatchedOptimizer
from optimlab.report.records import export_csv
from optimlab.train import CurvePoint, TrainConfig, train_run

# Fields that are clocks: they differ between any two runs of the same configuration.
CLOCKS = ("train_seconds", "steps_per_s", "optimizer_ms_per_step", "time_to_target_s",
          "time_to_target_optimizer_s")


def blobs(n_train: int = 240, n_val: int = 60, n_test: int = 60, dim: int = 8,
          classes: int = 4) -> Dataset:
    """Gaussian blobs: learnable in a few hundred steps, noisy enough to keep learning."""
    rng = np.random.default_rng(3)
    centers = rng.normal(0, 1.5, (classes, dim))

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.integers(0, classes, n)
        x = centers[y] + rng.normal(0, 1.5, (n, dim))
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)

    return Dataset("blobs", *split(n_train), *split(n_val), *split(n_test), (dim,), classes)


DS = blobs()
# One table of members: every optimizer, varied hyperparameters, and two that diverge.
MEMBERS = [("sgd", {"lr": 0.1}), ("sgd", {"lr": 1e3}), ("sgd", {"lr": 2e3}),
           ("momentum", {"lr": 0.2}), ("momentum", {"lr": 0.05, "momentum": 0.5}),
           ("rmsprop", {"lr": 1e-3}), ("rmsprop", {"lr": 3e-3, "alpha": 0.99}),
           ("adam", {"lr": 1e-2}),
           ("adam", {"lr": 3e-3, "betas": [0.5, 0.99], "weight_decay": 0.01})]


def configs(dtype: str, steps: int, seeds: int = 2, model: str = "mlp") -> list[TrainConfig]:
    """The members under alternating seeds: one group holds `seeds` minibatch orders."""
    return [TrainConfig(dataset="blobs", model=model, optimizer=name, hyperparameters=hp,
                        steps=steps, batch_size=20, seed=i % seeds, eval_every=50, dtype=dtype)
            for i, (name, hp) in enumerate(MEMBERS)]


def collect(fn, cfgs, *args) -> dict[str, object]:
    out: dict[str, object] = {}
    fn(cfgs, DS, lambda r: out.__setitem__(json.dumps(r.config.to_dict(), sort_keys=True), r),
       *args)
    return out


def key(c: TrainConfig) -> str:
    return json.dumps(c.to_dict(), sort_keys=True)


@pytest.fixture(autouse=True)
def one_thread():
    """As the commands run: on 2 shared cores a second thread only waits for the other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def assert_same_record(a: dict, b: dict, rel: float = 0.0) -> None:
    """Equal records, clocks aside; floats within `rel`."""
    assert a.keys() == b.keys()
    for k in b:
        if k in CLOCKS:
            continue
        if isinstance(b[k], float) and isinstance(a[k], float):
            assert a[k] == pytest.approx(b[k], rel=rel, abs=1e-300), k
        else:
            assert a[k] == b[k], k


def rel(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if (math.isnan(a) and math.isnan(b)) or a == b else math.inf
    return abs(a - b) / max(abs(b), 1e-12)


def conditioning(loss: float) -> float:
    """How much a loss of this size may amplify relative rounding in the parameters. A member
    that blows up (the CNN at η = 1e3, before its ReLUs die) reaches batch losses near 1e133,
    differences of far larger logits: parameters that agree to 3e-14 at every step then gave
    losses that agree to 4e-4 (measured), so beyond 1e100 a loss is held to 1e-3."""
    return 1e6 if math.isfinite(loss) and abs(loss) > 1e100 else 1.0


@pytest.fixture
def optimizer_paths(monkeypatch):
    """The paths (`BatchedOptimizer.last_impl`) that the vectorized groups' steps took."""
    seen: set[str | None] = set()
    step = BatchedOptimizer.step

    def recorded(self, grads):
        step(self, grads)
        seen.add(self.last_impl)

    monkeypatch.setattr(BatchedOptimizer, "step", recorded)
    return seen


@pytest.mark.parametrize("seeds", [2, 1], ids=["two-orders", "one-shared-minibatch"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_each_vectorized_member_equals_its_single_run_in_float64(model, seeds, optimizer_paths):
    """Through the written-out backward (mlp, cnn) and the fused batched optimizer steps:
    every member's curves and record."""
    cfgs = configs("float64", steps=200, seeds=seeds, model=model)
    batched = collect(run_vectorized, cfgs, 64)
    assert optimizer_paths == {"fused"}
    for c in cfgs:
        single, member = train_run(c, DS), batched[key(c)]
        assert [p[:4:2] + p[3:4] for p in member.curves] == [p[:4:2] + p[3:4]
                                                             for p in single.curves]
        worst = max(rel(a.value, b.value) / conditioning(b.value)
                    for a, b in zip(member.curves, single.curves, strict=True))
        assert worst <= 1e-9, (c.optimizer, c.hyperparameters, c.seed, worst)
        assert_same_record(member.record, single.record, rel=1e-9)
    diverged = {c.hyperparameters["lr"] for c in cfgs if batched[key(c)].record["diverged"]}
    # Only the huge steps, each alone; a CNN's ReLUs may all die at 1e3 instead of diverging.
    assert diverged <= {1e3, 2e3} and 2e3 in diverged
    assert model != "mlp" or diverged == {1e3, 2e3}


def test_groups_side_by_side_on_two_threads_equal_one_group_on_one(monkeypatch):
    """With torch on 2 threads the vectorized executor cuts the group in two and trains
    them side by side, one torch thread each; the results are the one group's, handed
    over in the calling thread; torch's thread count comes back."""
    import threading

    cfgs = configs("float64", steps=60)
    torch.set_num_threads(1)
    try:
        alone = collect(run_vectorized, cfgs, 64)
    finally:
        torch.set_num_threads(2)
    callers = set()

    def on_finish(result):
        callers.add(threading.current_thread().name)
        got[key(result.config)] = result

    got: dict = {}
    started = []
    run = executors.Group.run
    monkeypatch.setattr(executors.Group, "run", lambda self, *a: (
        started.append((len(self.configs), torch.get_num_threads())), run(self, *a))[1])
    run_vectorized(cfgs, DS, on_finish, 64)
    assert sorted(started) == [(4, 1), (5, 1)]  # two groups, one torch thread each
    assert callers == {threading.current_thread().name} and torch.get_num_threads() == 2
    for c in cfgs:
        a, b = got[key(c)], alone[key(c)]
        assert [p[:1] + p[2:4] for p in a.curves] == [p[:1] + p[2:4] for p in b.curves]
        assert max(rel(x.value, y.value) for x, y in zip(a.curves, b.curves)) <= 1e-12


def test_a_failure_beside_stops_the_other_group_and_is_raised():
    """An error while handing a result over (here: the store's) stops every group after its
    current step, is raised in the caller, and torch's thread count comes back."""
    torch.set_num_threads(2)
    cfgs = configs("float32", steps=400)

    def on_finish(result):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_vectorized(cfgs, DS, on_finish, 64)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("model", ["logreg", "cnn"])
def test_other_models_train_vectorized_as_their_single_runs(model):
    """The written-out backward (float64, one seed; every other member)."""
    cfgs = [TrainConfig(dataset="blobs", model=model, optimizer=name, hyperparameters=hp,
                        steps=30, batch_size=20, seed=0, eval_every=10, dtype="float64")
            for name, hp in MEMBERS[::2]]
    batched = collect(run_vectorized, cfgs, 64)
    for c in cfgs:
        single = train_run(c, DS)
        assert max(rel(a.value, b.value) for a, b in zip(batched[key(c)].curves, single.curves,
                                                          strict=True)) <= 1e-9, c.optimizer


def test_float32_members_agree_with_single_runs_within_seed_noise(optimizer_paths):
    cfgs = [c for c in configs("float32", steps=100) if c.hyperparameters["lr"] < 1e3][::2]
    batched = collect(run_vectorized, cfgs, 64)
    assert optimizer_paths == {"fused"}
    for c in cfgs:
        single = train_run(c, DS).record
        other_seed = train_run(TrainConfig(**{**c.to_dict(), "seed": 1 - c.seed}), DS).record
        noise = abs(single["final_train_loss"] - other_seed["final_train_loss"])
        gap = abs(batched[key(c)].record["final_train_loss"] - single["final_train_loss"])
        assert gap <= max(0.1 * noise, 1e-4), (c.optimizer, c.hyperparameters, gap, noise)


def test_processes_executor_gives_the_single_runs():
    cfgs = configs("float32", steps=20)[:2]
    results = collect(run_processes, cfgs, 2)
    for c in cfgs:
        assert_same_record(results[key(c)].record, train_run(c, DS).record)


@pytest.mark.parametrize("spec,expected", [
    ("1e-4:1e-1:8", [float(f"{v:.3g}") for v in np.logspace(-4, -1, 8)]),
    ("1e-3:1e-3:1", [1e-3]),
    ("0.9,0.99, 0.999", [0.9, 0.99, 0.999]),
    ([0.5, 0.9], [0.5, 0.9]),
    (0.01, [0.01]),
])
def test_grid_values(spec, expected):
    assert list(parse_values("lr", spec)) == expected


def test_a_decay_rate_is_rounded_in_one_minus_it_and_never_reaches_one():
    """0.9999 to 3 significant digits would be 1.0, which no β may be."""
    assert parse_values("beta2", "0.9999,0.99995,0.95") == (0.9999, 0.99995, 0.95)
    assert parse_values("momentum", "0.123456") == (0.123,)


@pytest.mark.parametrize("spec", ["1e-1:1e-4:3", "1e-4:1:0", "0:1:3", "a,b", "", [], "1:2:x",
                                  "-1,2"])
def test_bad_grid_values_name_the_key(spec):
    with pytest.raises(ValueError, match="Invalid beta2"):
        parse_values("beta2", spec)


def test_grids_apply_to_the_optimizers_that_have_the_key_and_flags_win():
    toml = {"optimizers": ["sgd", "adam", "rmsprop"], "lr": [0.1], "beta1": [0.8, 0.9],
            "alpha": "0.9,0.99", "grid": {"sgd": {"lr": [0.5, 1.0], "momentum": [0.9]}}}
    cfg = settings(toml, {"lr": None, "steps": 7})
    assert cfg.steps == 7
    assert hyperparameter_sets(cfg, "sgd") == [{"lr": 0.5, "momentum": 0.9},
                                               {"lr": 1.0, "momentum": 0.9}]
    assert hyperparameter_sets(cfg, "adam") == [{"lr": 0.1, "betas": [0.8, 0.999]},
                                                {"lr": 0.1, "betas": [0.9, 0.999]}]
    assert hyperparameter_sets(cfg, "rmsprop") == [{"alpha": 0.9, "lr": 0.1},
                                                   {"alpha": 0.99, "lr": 0.1}]
    flagged = settings(toml, {"lr": "1e-3,1e-2"})  # the flag replaces every lr grid
    assert [p["lr"] for p in hyperparameter_sets(flagged, "sgd")] == [1e-3, 1e-2]


@pytest.mark.parametrize("toml,match", [
    ({"learning_rate": [0.1]}, "learning_rate"),
    ({"executor": "gpu"}, "executor"),
    ({"optimizers": "sgd,adafactor"}, "adafactor"),
    ({"grid": {"adam": {"gamma": [1]}}}, "gamma"),
    ({"seeds": 0}, "seeds"),
])
def test_bad_settings_name_the_setting(toml, match):
    with pytest.raises(ValueError, match=match):
        settings(toml, {})


def small(tmp_path: Path, **kw) -> SweepConfig:
    base = dict(dataset="blobs", model="logreg", optimizers=("sgd", "adam"),
                grid={"lr": (0.03, 0.3)}, steps=30, batch_size=20, eval_every=10)
    return SweepConfig(**(base | kw))


def test_resume_runs_only_what_is_missing_and_extend_adds_grid_points(tmp_path):
    ran: list[str] = []
    on = lambda r: ran.append(r.config.optimizer)  # noqa: E731
    first = Sweep(small(tmp_path), tmp_path, dataset=DS).run(on)
    assert len(first) == len(ran) == 4
    again = Sweep(small(tmp_path, executor="sequential"), tmp_path, dataset=DS).run(on)
    assert len(ran) == 4 and [r["run"] for r in again] == [r["run"] for r in first]
    wider = small(tmp_path, grid={"lr": (0.03, 0.3, 1.0)})
    with pytest.raises(ValueError, match=r"other settings \(grid .*0\.3\]\} there"):
        Sweep(wider, tmp_path, dataset=DS)
    assert len(Sweep(wider, tmp_path, dataset=DS, extend=True).run(on)) == 6 and len(ran) == 6
    rows = sqlite3.connect(tmp_path / "sweep.sqlite").execute(
        "SELECT count(*), sum(status = 'done') FROM runs").fetchone()
    assert rows == (6, 6)
    assert not (tmp_path / "curves.csv").exists()  # written on demand only
    header = export_csv(tmp_path)[0].read_text().splitlines()[0]
    assert header == "run,step,train_seconds,split,metric,value"


@pytest.mark.parametrize("change,named", [
    ({"steps": 40}, "steps 30 there, 40 now"),
    ({"seeds": 2}, "seeds 1 there, 2 now"),
    ({"optimizers": ("sgd",)}, "optimizers"),
])
def test_resume_with_other_settings_is_refused_naming_what_differs(tmp_path, change, named):
    Sweep(small(tmp_path), tmp_path, dataset=DS).run()
    with pytest.raises(ValueError, match=re.escape(named)):
        Sweep(small(tmp_path, **change), tmp_path, dataset=DS)
    with pytest.raises(ValueError, match="--extend"):  # extend adds grid points, nothing else
        Sweep(small(tmp_path, grid={"lr": (0.03,)}, **change), tmp_path, dataset=DS,
              extend=True)
    assert len(Store(tmp_path).runs()) == 4  # nothing was added


def test_cli_resume_with_other_steps_exits_2_naming_steps(tmp_path, capsys):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    argv = ["sweep", "--dataset", f"npz:{tmp_path / 'blobs.npz'}", "--model", "logreg",
            "--optimizers", "sgd", "--lr", "0.1", "--steps", "20", "--batch-size", "20",
            "--eval-every", "10", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--steps", "30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optimlab sweep: error: ") and "steps 20 there, 30 now" in err
    assert len(err.strip().splitlines()) == 1


def test_select_val_reruns_the_best_grid_point_with_seeds(tmp_path):
    cfg = small(tmp_path, grid={"lr": (0.003, 0.03, 0.3)}, select="val", seeds=2)
    records = Sweep(cfg, tmp_path, dataset=DS).run()
    store = Store(tmp_path)
    runs = store.runs()
    for name in ("sgd", "adam"):
        grid = [r["summary"] for r in runs if "grid" in r["roles"] and
                r["config"]["optimizer"] == name]
        assert len(grid) == 3 and {g["seed"] for g in grid} == {0}
        best = max(grid, key=lambda g: g["final_val_acc"])["hyperparameters"]
        tuned = [r["config"] for r in runs if "tuned" in r["roles"] and
                 r["config"]["optimizer"] == name]
        assert {(c["seed"], json.dumps(c["hyperparameters"])) for c in tuned} == {
            (s, json.dumps(best)) for s in (0, 1)}
        shot = [r["config"] for r in runs if "one-shot" in r["roles"] and
                r["config"]["optimizer"] == name]
        assert sorted(c["seed"] for c in shot) == [0, 1]
        assert all(c["hyperparameters"] == {"lr": 1e-3} for c in shot)
    assert len(records) == len(runs)


def sweep_args(npz: Path, out: Path) -> list[str]:
    return ["sweep", "--dataset", f"npz:{npz}", "--model", "mlp", "--optimizers", "sgd,adam",
            "--lr", "0.03,0.3", "--beta1", "0.5,0.9", "--steps", "200", "--batch-size", "20",
            "--eval-every", "100", "--max-batch", "2", "--dtype", "float64",
            "--out", str(out)]


def comparable(out: Path) -> tuple[list[dict], list[list[str]]]:
    """summary.json without clocks, and curves.csv (exported) without its clock column."""
    records = [{k: v for k, v in r.items() if k not in CLOCKS}
               for r in summary_runs(out)]
    with export_csv(out)[0].open(newline="") as f:
        rows = list(csv.reader(f))
    return records, [r[:2] + r[3:] for r in rows]


def test_kill_9_mid_sweep_then_resume_gives_the_uninterrupted_results(tmp_path):
    x, y = DS.x_train.numpy(), DS.y_train.numpy()
    np.savez(tmp_path / "blobs.npz", x=x, y=y)
    killed = tmp_path / "killed"
    # killed with 3 of 6 runs committed and the 4th in flight (groups of 2 members)
    at_kill = kill_9_after_a_finished_run(sweep_args(tmp_path / "blobs.npz", killed),
                                          killed / "sweep.sqlite", after=3)
    assert at_kill == 3
    assert main(sweep_args(tmp_path / "blobs.npz", killed)) == 0  # resume
    whole = tmp_path / "whole"
    assert main(sweep_args(tmp_path / "blobs.npz", whole)) == 0
    assert comparable(killed) == comparable(whole)
    assert done_count(killed / "sweep.sqlite") == 6
    page = (killed / "report.html").read_text()
    assert page.count("<img alt=") == 0  # the PNGs only with --png
    assert all(f'id="{div}"' in page for div in ("lr-loss", "lr-acc", "betas", "best-train-loss"))
    assert main(["report", str(killed), "--png"]) == 0
    page = (killed / "report.html").read_text()
    assert page.count("<img alt=") == 4  # η-sensitivity, β heatmap, best curves, budget


def test_a_batched_store_commits_when_full_when_due_or_before_a_read(tmp_path, monkeypatch):
    cfgs = [TrainConfig(optimizer="sgd", seed=s) for s in range(4)]
    store, told = Store(tmp_path, batch_runs=3, batch_seconds=1.0), []
    store.plan(cfgs, "grid")
    curve = [CurvePoint(1, 0.5, "batch", "loss", 2.0), CurvePoint(1, 0.5, "val", "acc", 0.25)]

    def then(name: str):  # a run is reported only once committed, seen from another reader
        return lambda: told.append((name, done_count(tmp_path / "sweep.sqlite")))

    clock = iter([100.0, 100.5, 101.0])
    monkeypatch.setattr(sweep_store.time, "monotonic", lambda: next(clock))
    store.finish(cfgs[0], {"a": 1}, curve, then("0"))  # waits from t = 100
    assert not store.due() and store.due()  # at 100.5, then at 101.0
    assert done_count(tmp_path / "sweep.sqlite") == 0 and told == []
    monkeypatch.undo()
    store.finish(cfgs[1], {"a": 2}, curve, then("1"))
    store.finish(cfgs[2], {"a": 3}, curve, then("2"))  # the third: the batch is full
    assert told == [("0", 3), ("1", 3), ("2", 3)]
    store.finish(cfgs[3], {"a": 4}, curve)
    assert store.finished_count() == 4  # a read commits the pending first
    runs = Store(tmp_path).runs()
    assert [r["summary"]["a"] for r in runs] == [1, 2, 3, 4]
    assert all(r["curves"] == curve for r in runs)


def reported(text: str) -> list[str]:
    """The runs the sweep printed as finished (`NAME: val acc ...`), in order."""
    return re.findall(r"^(\S+): val acc", text, re.M)


def test_kill_9_during_a_batched_commit_loses_only_unreported_runs_and_resumes_once(
        tmp_path, capsys):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    killed, printed = tmp_path / "killed", tmp_path / "printed.txt"
    # batches of 2 (a group's members finish together): the kill lands inside the second
    # batch's transaction, once the first is committed and reported
    at_kill = kill_9_after_a_finished_run(sweep_args(tmp_path / "blobs.npz", killed),
                                          killed / "sweep.sqlite", after=2, batch=2,
                                          when="during", stdout=printed)
    before = reported(printed.read_text())
    with sqlite3.connect(killed / "sweep.sqlite") as conn:
        done = [n for (n,) in conn.execute("SELECT name FROM runs WHERE status = 'done'")]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert at_kill == 2 and sorted(before) == sorted(done)  # reported exactly the committed
    capsys.readouterr()
    assert main(sweep_args(tmp_path / "blobs.npz", killed)) == 0  # resume
    again = reported(capsys.readouterr().out)
    assert sorted(again + before) == sorted(r["run"] for r in Store(killed).runs())
    assert len(again) == 4  # each unfinished run once, no finished one again
    whole = tmp_path / "whole"
    assert main(sweep_args(tmp_path / "blobs.npz", whole)) == 0
    assert comparable(killed) == comparable(whole)


@pytest.mark.parametrize("argv,match", [
    (["--lr", "1:0.1:3"], "Invalid lr"),
    (["--beta1", "x"], "Invalid beta1"),
    (["--seeds", "0"], "argument --seeds: '0'; allowed: an integer >= 1"),
    (["--dataset", "nope"], "nope"),
])
def test_bad_flags_exit_2_with_a_message(tmp_path, capsys, argv, match):
    assert exit_code(["sweep", *argv, "--out", str(tmp_path / "o")]) == 2
    assert match in capsys.readouterr().err


def test_bad_config_file_exits_2(tmp_path, capsys):
    (tmp_path / "s.toml").write_text('optimizers = ["sgd"]\nlearning_rate = [0.1]\n')
    assert main(["sweep", "--config", str(tmp_path / "s.toml"), "--out", str(tmp_path)]) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_a_full_store_says_what_is_safe_and_the_same_command_resumes(tmp_path, monkeypatch,
                                                                    capsys):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    argv = ["sweep", "--dataset", f"npz:{tmp_path / 'blobs.npz'}", "--model", "logreg",
            "--optimizers", "sgd,adam", "--lr", "0.03,0.3", "--steps", "200", "--batch-size",
            "20", "--eval-every", "100", "--executor", "sequential", "--out", str(tmp_path / "o")]
    real, calls = Store._write, []
    monkeypatch.setattr(sweep_module, "BATCH_RUNS", 2)

    # 200 steps: a run's row (about 4 KB) needs a new page, which the limit refuses
    def write(self, batch):  # the 2nd batch finds the database at its size limit
        calls.append(1)
        if len(calls) == 2:
            pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
            self.conn.execute(f"PRAGMA max_page_count = {pages}")
        return real(self, batch)

    monkeypatch.setattr(Store, "_write", write)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    safe = done_count(tmp_path / "o" / "sweep.sqlite")
    assert safe == 2  # the first batch; none of the second
    assert err == (f"optimlab sweep: error: the disk is full while writing "
                   f"{tmp_path / 'o' / 'sweep.sqlite'}: {safe} finished runs are safe there; "
                   "free space and run the same sweep command again to resume")
    with sqlite3.connect(tmp_path / "o" / "sweep.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    monkeypatch.setattr(Store, "_write", real)
    assert main(argv) == 0
    assert done_count(tmp_path / "o" / "sweep.sqlite") == 4


def grid_runs(out: Path, optimizer: str) -> list[dict]:
    return [r for r in Store(out).runs() if "grid" in r["roles"]
            and r["config"]["optimizer"] == optimizer]


def best_of(runs: list[dict]) -> dict:
    """The selection rule written out: best final val accuracy, ties by val loss."""
    def score(run):
        return (run["summary"]["final_val_acc"], -run["summary"]["final_val_loss"])
    return max((r for r in runs if not r["summary"]["diverged"]), key=score)


def test_a_best_lr_on_the_edge_of_its_grid_is_flagged_in_records_and_terminal(tmp_path,
                                                                              capsys):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    out = tmp_path / "o"
    # 20 steps of SGD on blobs: the larger η learns more, so the best is the high edge
    assert main(["sweep", "--dataset", f"npz:{tmp_path / 'blobs.npz'}", "--model", "logreg",
                 "--optimizers", "sgd", "--lr", "1e-4,1e-3,1e-2", "--steps", "20",
                 "--batch-size", "20", "--eval-every", "10", "--out", str(out)]) == 0
    best = best_of(grid_runs(out, "sgd"))
    assert best["config"]["hyperparameters"] == {"lr": 0.01}
    terminal = capsys.readouterr().out.replace("\n", " ")
    assert "sgd: best lr=0.01 (on val); lr on the high edge of its grid 0.0001..0.01" in terminal
    records = summary_runs(out)
    assert {r["run"]: r["edge"] for r in records} == {
        "sgd-lr0.0001-seed0": None, "sgd-lr0.001-seed0": None,
        "sgd-lr0.01-seed0": {"lr": "high"}}
    assert Store(out).meta()["selection"]["sgd"]["edge"] == {"lr": "high"}


def test_extend_edges_widens_the_grid_until_the_best_is_inside_and_reselects(tmp_path):
    cfg = small(tmp_path, optimizers=("sgd",), grid={"lr": (1e-3, 3e-3)}, select="val",
                extend_edges=True, seeds=2)
    sweep = Sweep(cfg, tmp_path, dataset=DS)
    sweep.run()
    runs = grid_runs(tmp_path, "sgd")
    lrs = sorted(r["config"]["hyperparameters"]["lr"] for r in runs)
    # each extension one step of the grid's ratio (3x) past the edge, at most three
    assert lrs[:2] == [1e-3, 3e-3] and lrs[2:] == [0.009, 0.027, 0.081][:len(lrs) - 2]
    best = best_of(runs)
    chosen = best["config"]["hyperparameters"]["lr"]
    assert chosen != lrs[-1] or len(lrs) == 5  # inside the grid, or the extensions ran out
    tuned = [r["config"] for r in Store(tmp_path).runs() if "tuned" in r["roles"]]
    assert sorted(c["seed"] for c in tuned) == [0, 1]
    assert {c["hyperparameters"]["lr"] for c in tuned} == {chosen}
    assert sweep.selection()["sgd"]["edge"] == ({"lr": "high"} if chosen == lrs[-1] else {})


def test_extend_edges_needs_select_val():
    with pytest.raises(ValueError, match="--extend-edges with --select val"):
        SweepConfig(extend_edges=True)


def test_when_every_lr_diverges_selection_says_so_and_tunes_nothing(tmp_path, capsys):
    cfg = small(tmp_path, optimizers=("sgd", "adam"), select="val", model="mlp",
                per_optimizer={"sgd": {"lr": (1e3, 1e4)}})
    sweep = Sweep(cfg, tmp_path, dataset=DS)
    sweep.run()
    chosen = sweep.selection()
    assert chosen["sgd"] == {"hyperparameters": None, "run": None, "all_diverged": True,
                             "edge": {}}
    assert chosen["adam"]["hyperparameters"] is not None and not chosen["adam"]["all_diverged"]
    tuned = [r["config"]["optimizer"] for r in Store(tmp_path).runs() if "tuned" in r["roles"]]
    assert tuned == ["adam"]


def test_compare_tune_training_failure_is_not_a_flag_error(tmp_path, monkeypatch, capsys):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())

    def broken(*args, **kwargs):
        raise RuntimeError("a bug while training")

    monkeypatch.setitem(executors.EXECUTORS, "vectorized", broken)
    with pytest.raises(RuntimeError, match="a bug while training"):
        main(["compare", "--dataset", f"npz:{tmp_path / 'blobs.npz'}", "--model", "logreg",
              "--optimizers", "sgd", "--steps", "20", "--batch-size", "20", "--tune",
              "--out", str(tmp_path / "o")])
    assert "error: Invalid" not in capsys.readouterr().err


@pytest.mark.parametrize("executor", ["vectorized", "sequential"])
def test_progress_counts_every_planned_step_diverged_runs_included(tmp_path, monkeypatch,
                                                                   executor):
    monkeypatch.setattr("optimlab.lab.executors.Steps.REPORT_EVERY_S", 0.0)  # every report
    seen = []
    # sgd at η 1e3 diverges within a few steps on the MLP; its skipped steps still count
    cfg = small(tmp_path, model="mlp", optimizers=("sgd", "adam"), executor=executor,
                per_optimizer={"sgd": {"lr": (0.03, 1e3)}})
    records = Sweep(cfg, tmp_path, dataset=DS).run(on_progress=seen.append)
    assert any(r["diverged"] for r in records)
    planned = 4 * cfg.steps
    assert [p.steps for p in seen] == [planned] * len(seen)
    done = [p.steps_done for p in seen]
    assert done == sorted(done) and done[-1] == planned and len(done) > cfg.steps


def test_members_with_different_shared_options_train_in_their_own_segments(tmp_path):
    """Adam's batched update needs bias_correction shared by its members: two entries that
    differ there train side by side in one vectorized group, each as its single run."""
    argv = ["sweep", "--optimizers", "adam, nobc=adam(bias_correction=False)", "--lr", "0.01",
            "--model", "logreg", "--steps", "20", "--eval-every", "10", "--dtype", "float64"]
    records = []
    for executor in ("vectorized", "sequential"):
        out = tmp_path / executor
        assert main([*argv, "--executor", executor, "--out", str(out)]) == 0
        with sqlite3.connect(out / "sweep.sqlite") as conn:
            rows = conn.execute("SELECT config, summary FROM runs WHERE status = 'done'")
            records.append({json.dumps(json.loads(c)["hyperparameters"], sort_keys=True):
                            json.loads(s)["final_train_loss"] for c, s in rows})
    assert len(records[0]) == 2 and records[0].keys() == records[1].keys()
    for k, loss in records[0].items():
        assert loss == pytest.approx(records[1][k], rel=1e-9)
    assert len(set(records[0].values())) == 2  # the correction changes the run


@pytest.mark.parametrize("text,flat,betas", [
    ("adam(betas=(0.5, 0.99))", {"beta2": 0.9}, [0.5, 0.9]),   # the entry's other half
    ("adam", {"beta1": 0.8}, [0.8, 0.999]),                   # the class default
    ("torch.optim:Adam", {"beta2": 0.95}, [0.9, 0.95]),       # a module:Class's default
    ("adam", {"lr": 0.1}, None)])                             # no pair: betas untouched
def test_a_grid_point_sets_one_half_of_a_pair_and_keeps_the_other(text, flat, betas):
    from optimlab.lab.entries import parse_list
    from optimlab.lab.grid import with_values

    (entry,) = parse_list(text)
    point = with_values(entry, flat)
    assert point.get("betas") == betas
    assert {k: v for k, v in point.items() if k != "betas"} == {
        k: v for k, v in {**entry.hyperparameters, **flat}.items()
        if k not in ("betas", "beta1", "beta2")}
