"""Interrupting and resuming: runs in flight are checkpointed on their cadence, and a run
resumed from any checkpoint ends exactly as the uninterrupted run (clocks aside), with
every executor; Ctrl-C says what was kept and how to resume; kill -9 loses at most one
interval."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import store_count
from test_sweep import CLOCKS, DS, comparable, one_thread  # noqa: F401 (autouse)

from optimlab.analysis.store import decode_curves, encode_curves
from optimlab.cli import main
from optimlab.lab.compare import CompareConfig, _Store, run_compare, run_name
from optimlab.lab.executors import Checkpoints
from optimlab.lab.grid import SweepConfig
from optimlab.lab.store import Store
from optimlab.lab.sweep import Sweep
from optimlab.train import TrainConfig, batch_indices, train_run
from optimlab.train import checkpoint as ckpt
from optimlab.train.checkpoint import Cadence, Resume, curves_from_state, from_bytes


def points(curves) -> list[tuple]:
    """A curve without its clock column (NaN as text: NaN != NaN)."""
    return [(p.step, p.split, p.metric, p.value if p.value == p.value else "nan")
            for p in curves]


def test_minibatches_from_a_step_are_the_rest_of_the_uninterrupted_order():
    # 10 examples in batches of 3: 3 slices an epoch, so step 7 starts the third epoch
    whole = batch_indices(10, 3, seed=5)
    first = [next(whole) for _ in range(12)]
    for start in (1, 3, 4, 7):
        resumed = batch_indices(10, 3, seed=5, start=start)
        assert all(torch.equal(next(resumed), b) for b in first[start:])


def test_the_cadence_is_a_tenth_of_the_steps_or_the_interval_whichever_comes_first(
        monkeypatch):
    now = [0.0]
    monkeypatch.setattr(ckpt.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(ckpt, "MIN_S", 1.0)  # the tests' own 0 (conftest) put back

    def due(cadence, seconds_per_step, steps):
        found = []
        for t in range(cadence.last_step + 1, steps + 1):
            now[0] += seconds_per_step
            if cadence.due(t):
                found.append(t)
        return found
    # a tenth: every 10 steps, 2 s of training each
    assert due(Cadence(steps=95, start=0, seconds=30.0), 0.2, 95) == list(range(10, 95, 10))
    # a tenth in under MIN_S waits for it: at 1/16 s a step, every 16 steps, not 10
    assert due(Cadence(steps=95, start=0, seconds=30.0), 0.0625, 95) == [16, 32, 48, 64, 80]
    # a run of 5 steps in milliseconds takes none (it took one at every step)
    assert due(Cadence(steps=5, start=0, seconds=30.0), 1e-3, 5) == []
    # an interval shorter than MIN_S (the tests' 0.05 s) comes first
    assert due(Cadence(steps=95, start=0, seconds=0.05), 0.01, 95)[:2] == [5, 10]
    cadence = Cadence(steps=1000, start=200, seconds=30.0)
    due = []
    for t in range(201, 1001):
        now[0] += 7.0  # 7 s a step: the interval comes first, every 5th step
        if cadence.due(t):
            due.append(t)
    assert due[:3] == [205, 210, 215] and due[-1] == 995  # never after the last step


@pytest.mark.parametrize("text", ["0", "-1", "soon", "nan"])
def test_a_bad_checkpoint_interval_names_the_variable(monkeypatch, text):
    monkeypatch.setenv(ckpt.EVERY_S_ENV, text)
    with pytest.raises(ValueError, match=f"Invalid \\${ckpt.EVERY_S_ENV} '{text}'"):
        Cadence(100)


# Optimizers with state of every kind, schedules (the scheduler's state), and a member that
# diverges after the first checkpoints.
RUNS = [("adam", {"lr": 1e-2}, "constant"), ("sgd", {"lr": 0.1, "momentum": 0.9}, "cosine"),
        ("rmsprop", {"lr": 1e-3, "centered": True}, "inv-sqrt"),
        ("adagrad", {"lr": 0.05}, "step:20:0.5"), ("sgd", {"lr": 30.0}, "warmup:5")]


@pytest.mark.parametrize("name,hp,schedule", RUNS, ids=[r[0] + "-" + r[2] for r in RUNS])
def test_a_run_resumed_from_each_checkpoint_ends_as_the_uninterrupted_run(name, hp, schedule):
    config = TrainConfig(dataset="blobs", model="mlp", optimizer=name, hyperparameters=hp,
                         steps=50, batch_size=20, eval_every=15, schedule=schedule)
    saved: list[tuple[int, bytes]] = []
    whole = train_run(config, DS, resume=Resume(None, lambda s, b: saved.append((s, b))))
    assert [s for s, _ in saved] == list(range(5, min(50, whole.record["steps"] + 1), 5))
    assert saved
    for step, blob in saved:
        resumed = train_run(config, DS, resume=Resume(blob, lambda s, b: None))
        assert points(resumed.curves) == points(whole.curves), step
        assert ({k: v for k, v in resumed.record.items() if k not in CLOCKS}
                == {k: v for k, v in whole.record.items() if k not in CLOCKS})
        kept = curves_from_state(from_bytes(blob)["curves"])
        assert resumed.curves[:len(kept)] == kept  # clocks included


def sweep_config(executor: str, **kw) -> SweepConfig:
    """12 runs: 3 optimizers × 4 η (two of SGD's diverge), groups of 4, 60 steps."""
    return SweepConfig(**{"dataset": "blobs", "model": "mlp", "optimizers": ("sgd", "momentum",
                                                                             "adam"),
                          "grid": {"lr": (1e-3, 1e-2, 0.1, 30.0)}, "steps": 60,
                          "batch_size": 20, "eval_every": 25, "max_batch": 4,
                          "executor": executor} | kw)


def interrupted_after(monkeypatch, batches: int) -> list[list]:
    """Make a sweep raise KeyboardInterrupt once `batches` lists of checkpoints have been
    handed to the store and it keeps some (a checkpoint that arrives after its run's result
    is not kept); the lists, as handed over."""
    stored: list[list] = []
    real = Sweep._checkpointed

    def checkpointed(self, checkpoints):
        real(self, checkpoints)
        stored.append(checkpoints)
        if len(stored) >= batches and self.store.checkpoint_steps():
            raise KeyboardInterrupt

    monkeypatch.setattr(Sweep, "_checkpointed", checkpointed)
    return stored


def kept_in_store(resumed: list, kept: list) -> bool:
    """Whether the stored curve `resumed` begins with the checkpoint's curve `kept`, clocks
    included, as the store keeps curves (float32 clocks, grouped by series)."""
    last = max(p.step for p in kept)
    return [p for p in resumed if p.step <= last] == decode_curves(encode_curves(kept))


def store_points(out: Path) -> dict[str, tuple]:
    """run -> (status, record without clocks, curve without clocks) of every stored run."""
    return {r["run"]: (r["status"], {k: v for k, v in r["summary"].items() if k not in CLOCKS},
                       points(r["curves"])) for r in Store(out).runs(done_only=False)}


@pytest.mark.parametrize("executor,threads", [
    ("vectorized", 1), ("vectorized", 2), ("sequential", 1),
    pytest.param("processes", 1, marks=pytest.mark.slow)])  # three pools of spawned workers
def test_an_interrupted_sweep_resumes_from_its_checkpoints_to_the_uninterrupted_store(
        tmp_path, monkeypatch, executor, threads):
    torch.set_num_threads(threads)  # 2: the vectorized groups train side by side
    # the processes' runs long enough (about a second each, on a quiet machine too) that
    # checkpoints reach the store before their results
    cfg = sweep_config(executor, steps=3000 if executor == "processes" else 60)
    Sweep(cfg, tmp_path / "whole", dataset=DS).run()
    stored = interrupted_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        Sweep(cfg, tmp_path / "cut", dataset=DS).run()
    monkeypatch.undo()
    torch.set_num_threads(threads)
    store = Store(tmp_path / "cut")
    blobs = store.checkpoints([c for batch in stored for c, _, _ in batch])
    assert blobs and all(step > 0 for step, _ in blobs.values())
    before = {key: curves_from_state(from_bytes(blob)["curves"])
              for key, (_, blob) in blobs.items()}
    Sweep(cfg, tmp_path / "cut", dataset=DS).run()
    assert store_points(tmp_path / "cut") == store_points(tmp_path / "whole")
    assert len(store_points(tmp_path / "whole")) == 12
    resumed = {r["key"]: r["curves"] for r in Store(tmp_path / "cut").runs()}
    for key, kept in before.items():  # went on from the checkpoint: its clocks are kept
        assert kept_in_store(resumed[key], kept)
    assert Store(tmp_path / "cut").checkpoint_steps() == {}  # finished runs keep none


@pytest.mark.parametrize("before,after", [("vectorized", "sequential"),
                                          ("sequential", "vectorized")])
def test_a_run_resumed_by_another_kind_of_executor_starts_over_to_the_same_store(
        tmp_path, monkeypatch, before, after):
    """A group member's checkpoint is not `train_run`'s, nor the other way round. (Runs
    finished before the interrupt keep the first executor's float32 rounding.)"""
    Sweep(sweep_config(after), tmp_path / "whole", dataset=DS).run()
    interrupted_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        Sweep(sweep_config(before), tmp_path / "cut", dataset=DS).run()
    monkeypatch.undo()
    in_flight = Store(tmp_path / "cut").checkpoint_steps()
    assert in_flight
    Sweep(sweep_config(after), tmp_path / "cut", dataset=DS).run()
    cut, whole = store_points(tmp_path / "cut"), store_points(tmp_path / "whole")
    assert len(cut) == 12 and all(cut[run] == whole[run] for run in in_flight)


def test_a_checkpoint_of_a_finished_run_is_not_kept(tmp_path):
    cfg = sweep_config("sequential", grid={"lr": (1e-2,)}, optimizers=("adam",))
    sweep = Sweep(cfg, tmp_path, dataset=DS)
    sweep.run()
    (run,) = sweep.store.runs()
    config = TrainConfig(**run["config"])
    sweep.store.save_checkpoints([(config, 30, b"late")])  # arrived after its result
    assert sweep.store.checkpoint_steps() == {}


def cli_args(npz: Path, out: Path) -> list[str]:
    return ["sweep", "--dataset", f"npz:{npz}", "--model", "mlp", "--optimizers", "sgd,adam",
            "--lr", "0.03,0.3", "--steps", "200", "--batch-size", "20", "--eval-every", "50",
            "--max-batch", "2", "--out", str(out)]


def test_ctrl_c_says_what_was_kept_and_the_command_that_resumes(tmp_path, monkeypatch,
                                                                 capsys):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    interrupted_after(monkeypatch, 2)  # the first group at step 20, then at step 40
    # one thread: two groups side by side would hand in their checkpoints in either order
    assert main([*cli_args(tmp_path / "blobs.npz", tmp_path / "out"), "--threads", "1"]) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1] == "interrupted", lines
    assert lines[0].startswith(f"kept in {tmp_path / 'out' / 'sweep.sqlite'}: 0 finished "
                               "runs and checkpoints of 2 runs in flight (at step 40 of 200)")
    command = lines[0].split("; resume: ")[1]
    assert command.startswith("optimlab sweep ") and command.endswith(str(tmp_path / "out"))
    monkeypatch.undo()
    assert main(command.split()[1:]) == 0
    assert len(Store(tmp_path / "out").runs()) == 4


# The child of the signal tests: the CLI, with checkpoints every 0.05 s and each step slowed
# down so that the signal finds runs in flight.
_SLOW_SWEEP = """
import sys, time
import optimlab.lab.executors as executors
step = executors.Group.step
def slow(self, t, on_finish):
    time.sleep(0.01)
    step(self, t, on_finish)
executors.Group.step = slow
from optimlab.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def checkpoint_count(db: Path) -> int:
    return store_count(db, "SELECT count(*) FROM checkpoints")


def signal_when_checkpointed(argv: list[str], db: Path, signum: int
                             ) -> subprocess.CompletedProcess:
    """Run the slowed sweep, send it `signum` once its store holds a checkpoint."""
    env = os.environ | {ckpt.EVERY_S_ENV: "0.05"}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SWEEP, *argv], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while checkpoint_count(db) == 0:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint in 120 s"
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, proc.returncode, "", err)


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGKILL, -signal.SIGKILL),
                                         (signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["kill-9", "sigint", "sigterm"])
def test_a_signalled_sweep_resumes_from_its_checkpoints_to_the_uninterrupted_results(
        tmp_path, signum, code):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    cut = tmp_path / "cut"
    done = signal_when_checkpointed(cli_args(tmp_path / "blobs.npz", cut), cut / "sweep.sqlite",
                                    signum)
    assert done.returncode == code, done.stderr
    if signum != signal.SIGKILL:
        assert "checkpoints of" in done.stderr and "; resume: optimlab sweep" in done.stderr
    steps = Store(cut).checkpoint_steps()
    assert steps and all(0 < s < 200 for s in steps.values())
    assert main(cli_args(tmp_path / "blobs.npz", cut)) == 0
    assert main(cli_args(tmp_path / "blobs.npz", tmp_path / "whole")) == 0
    assert comparable(cut) == comparable(tmp_path / "whole")
    assert checkpoint_count(cut / "sweep.sqlite") == 0


@pytest.mark.slow
def test_ctrl_c_at_a_terminal_stops_the_processes_executor_with_two_lines(tmp_path):
    """A terminal's Ctrl-C signals the whole process group, the pool's workers too."""
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    out = tmp_path / "out"
    argv = [*cli_args(tmp_path / "blobs.npz", out), "--steps", "20000", "--executor",
            "processes"]
    proc = subprocess.Popen([sys.executable, "-m", "optimlab", *argv], text=True,
                            env=os.environ | {ckpt.EVERY_S_ENV: "0.05"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while checkpoint_count(out / "sweep.sqlite") == 0:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "runs in flight" in lines[0] and lines[1] == "interrupted", err


def test_checkpoints_in_flight_are_read_back_without_unpickling_code(tmp_path, monkeypatch):
    cfg = sweep_config("vectorized")
    interrupted_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        Sweep(cfg, tmp_path, dataset=DS).run()
    monkeypatch.undo()
    loads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: loads.append(kw) or real(*a, **kw))
    Sweep(cfg, tmp_path, dataset=DS).run()
    assert loads and all(kw.get("weights_only") is True for kw in loads)


def in_flight(out: Path) -> dict[str, int]:
    """run -> the step of its stored checkpoint, for every run in flight in `out`'s store."""
    return Store(out).checkpoint_steps()


def test_an_interrupted_comparison_goes_on_from_the_checkpoint_of_its_run_in_flight(
        tmp_path, monkeypatch):
    cfg = CompareConfig(dataset="blobs", model="mlp", optimizers=("sgd", "adam"), seeds=1,
                        steps=60, eval_every=25, batch_size=20)
    run_compare(cfg, tmp_path / "whole", dataset=DS, executor="sequential")
    real, kept = _Store.checkpoints, []

    def checkpoints(self, configs):
        found = real(self, configs)
        save = found.save

        def saved(batch):  # the second run's second checkpoint, then Ctrl-C
            save(batch)
            kept.extend(batch)
            (config, step, _), = batch
            if run_name(config) == "adam-seed0" and step == 12:
                raise KeyboardInterrupt
        return Checkpoints(found.saved, saved, found.seconds)

    monkeypatch.setattr(_Store, "checkpoints", checkpoints)
    with pytest.raises(KeyboardInterrupt):
        run_compare(cfg, tmp_path / "cut", dataset=DS, executor="sequential")
    monkeypatch.undo()
    assert in_flight(tmp_path / "cut") == {"adam-seed0": 12}
    assert not (tmp_path / "cut" / "checkpoints").exists()  # in the store, not in files
    run_compare(cfg, tmp_path / "cut", dataset=DS, executor="sequential")
    assert comparable(tmp_path / "cut") == comparable(tmp_path / "whole")
    assert in_flight(tmp_path / "cut") == {}  # every run ended
    with (tmp_path / "cut" / "curves.csv").open(newline="") as f:
        clocks = [float(r[2]) for r in csv.reader(f) if r[0] == "adam-seed0"]
    kept_clocks = [p.train_seconds for p in curves_from_state(from_bytes(kept[-1][2])["curves"])]
    # went on from the checkpoint (its clocks as the store keeps them: float32)
    assert np.float32(clocks[:len(kept_clocks)]).tolist() == np.float32(kept_clocks).tolist()


def test_an_interrupted_vectorized_comparison_goes_on_from_its_members_checkpoints(
        tmp_path, monkeypatch):
    """Each member's checkpoint goes to its run's row of the store; the resumed group ends
    where the uninterrupted one does, its curves going on from the checkpoint's clocks."""
    cfg = CompareConfig(dataset="blobs", model="mlp", optimizers=("sgd", "adam"), seeds=2,
                        steps=60, eval_every=25, batch_size=20)
    run_compare(cfg, tmp_path / "whole", dataset=DS)
    real, kept = _Store.checkpoints, []

    def checkpoints(self, configs):
        found = real(self, configs)
        save = found.save

        def saved(batch):  # the group's second checkpoint, then Ctrl-C
            save(batch)
            kept.extend(batch)
            if batch[0][1] == 12:
                raise KeyboardInterrupt
        return Checkpoints(found.saved, saved, found.seconds)

    monkeypatch.setattr(_Store, "checkpoints", checkpoints)
    with pytest.raises(KeyboardInterrupt):
        run_compare(cfg, tmp_path / "cut", dataset=DS)
    monkeypatch.undo()
    assert in_flight(tmp_path / "cut") == dict.fromkeys(
        ("sgd-seed0", "adam-seed0", "sgd-seed1", "adam-seed1"), 12)  # every member's
    # members at different steps (one checkpoint lost) go on as separate groups (this one
    # from the start)
    Store(tmp_path / "cut").drop_checkpoint(next(c for c, _, _ in kept
                                                 if run_name(c) == "sgd-seed0"))
    resumed = []
    monkeypatch.setattr(_Store, "checkpoints", lambda self, configs: resumed.append(
        real(self, configs)) or resumed[-1])
    run_compare(cfg, tmp_path / "cut", dataset=DS)
    assert sorted(resumed[0].starts().values()) == [12] * 3
    assert comparable(tmp_path / "cut") == comparable(tmp_path / "whole")
    assert in_flight(tmp_path / "cut") == {}
    with (tmp_path / "cut" / "curves.csv").open(newline="") as f:
        clocks = [float(r[2]) for r in csv.reader(f) if r[0] == "adam-seed1"]
    last = next(blob for config, _, blob in reversed(kept) if run_name(config) == "adam-seed1")
    kept_clocks = [p.train_seconds for p in curves_from_state(from_bytes(last)["curves"])]
    assert np.float32(clocks[:len(kept_clocks)]).tolist() == np.float32(kept_clocks).tolist()
