"""The Ray executor against the local vectorized one, on a local Ray of 2 CPUs: equal
results, a killed driver resumed, a killed worker retried, and the error without Ray."""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
from conftest import kill_9_after_a_finished_run
from test_interrupt import interrupted_after, kept_in_store, store_points
from test_sweep import CLOCKS, DS, comparable, one_thread  # noqa: F401 (autouse)

from optimlab.cli import main
from optimlab.lab import ray_executor
from optimlab.lab.grid import SweepConfig
from optimlab.lab.store import Store, run_name
from optimlab.lab.sweep import Sweep
from optimlab.train import TrainConfig
from optimlab.train.checkpoint import EVERY_S_ENV, curves_from_state, from_bytes


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module (starting one costs seconds): its address. Its workers
    checkpoint every 0.2 s: the tests' runs take milliseconds, and conftest's rule for them
    (a checkpoint at every tenth of a run) does not reach other processes."""
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                       runtime_env={"env_vars": {EVERY_S_ENV: "0.2"}})
    yield context.address_info["address"]
    ray.shutdown()


def sixteen(executor: str) -> SweepConfig:
    """4 optimizers x 4 η, 4 members a shard: 4 shards on 2 CPUs."""
    return SweepConfig(dataset="blobs", model="mlp", grid={"lr": (1e-3, 1e-2, 0.1, 1.0)},
                       steps=60, batch_size=20, eval_every=20, max_batch=4, executor=executor)


def stored(out: Path) -> dict[str, tuple[str, dict, list]]:
    """name -> (status, record without clocks, curves without clocks), from the store."""
    return {r["run"]: (r["status"], {k: v for k, v in r["summary"].items() if k not in CLOCKS},
                       [(p.step, p.split, p.metric, p.value) for p in r["curves"]])
            for r in Store(out).runs(done_only=False)}


def assert_close(ray_runs: dict, local_runs: dict, tol: float = 1e-6) -> None:
    assert ray_runs.keys() == local_runs.keys()
    for name, (status, record, curves) in ray_runs.items():
        status_, record_, curves_ = local_runs[name]
        assert status == status_ == "done"
        assert record.keys() == record_.keys()
        for k, v in record.items():
            if isinstance(v, float):
                assert v == pytest.approx(record_[k], rel=tol, abs=tol, nan_ok=True), (name, k)
            else:
                assert v == record_[k], (name, k)
        assert [c[:3] for c in curves] == [c[:3] for c in curves_]
        assert np.allclose([c[3] for c in curves], [c[3] for c in curves_], rtol=tol, atol=tol,
                           equal_nan=True), name


ray_put = ray.put


def test_ray_gives_the_vectorized_results_dataset_put_once(cluster, tmp_path, monkeypatch):
    puts = []
    monkeypatch.setattr(ray, "put", lambda value: puts.append(value) or ray_put(value))
    seen, progress = [], []
    Sweep(sixteen("ray"), tmp_path / "ray", dataset=DS).run(
        on_result=lambda r: seen.append(run_name(r.config)), on_progress=progress.append)
    Sweep(sixteen("vectorized"), tmp_path / "local", dataset=DS).run()
    local = stored(tmp_path / "local")
    assert len(local) == 16
    assert_close(stored(tmp_path / "ray"), local)
    assert sorted(seen) == sorted(local)  # each run handed over once
    assert puts == [DS]  # the dataset went into the object store once, for 4 shards
    last = progress[-1]
    assert (last.shards_done, last.shards, last.steps_done, last.steps) == (4, 4, 960, 960)
    assert all(a.steps_done <= b.steps_done for a, b in zip(progress, progress[1:]))


def test_scheduled_runs_are_shards_of_their_own_with_the_local_results(cluster, tmp_path):
    """The batched optimizers keep η fixed: a scheduled run trains alone, as locally."""
    cfg = SweepConfig(dataset="blobs", model="mlp", optimizers=("sgd", "adam"),
                      grid={"lr": (1e-2, 0.1)}, steps=40, batch_size=20, eval_every=20,
                      max_batch=4, schedule="cosine")
    progress: list = []
    Sweep(dataclasses.replace(cfg, executor="ray"), tmp_path / "ray", dataset=DS).run(
        on_progress=progress.append)
    Sweep(cfg, tmp_path / "local", dataset=DS).run()
    assert_close(stored(tmp_path / "ray"), stored(tmp_path / "local"))
    assert (progress[-1].shards_done, progress[-1].steps_done) == (4, 160)


def test_a_worker_killed_mid_shard_is_retried_and_each_run_stored_once(
        cluster, tmp_path, monkeypatch):
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(ray_executor.KILL_ONCE_ENV, f"2:{marker}")
    seen: list[str] = []
    Sweep(sixteen("ray"), tmp_path / "ray", dataset=DS).run(
        on_result=lambda r: seen.append(run_name(r.config)))
    assert marker.exists()  # shard 2's first worker did exit halfway
    assert len(seen) == len(set(seen)) == 16
    with sqlite3.connect(tmp_path / "ray" / "sweep.sqlite") as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT name), sum(status = 'done') "
                            "FROM runs").fetchone() == (16, 16, 16)
    monkeypatch.delenv(ray_executor.KILL_ONCE_ENV)
    Sweep(sixteen("vectorized"), tmp_path / "local", dataset=DS).run()
    assert_close(stored(tmp_path / "ray"), stored(tmp_path / "local"))


def test_an_interrupted_ray_sweep_resumes_from_its_checkpoints_to_the_local_store(
        cluster, tmp_path, monkeypatch):
    # shards long enough (about a second each) that the driver stores checkpoints of runs
    # still in flight: it takes them from the actor every REPORT_EVERY_S
    cfg = dataclasses.replace(sixteen("ray"), steps=2000, eval_every=500)
    interrupted_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        Sweep(cfg, tmp_path / "ray", dataset=DS).run()
    monkeypatch.undo()
    store = Store(tmp_path / "ray")
    blobs = store.checkpoints(TrainConfig(**r["config"]) for r in store.runs(done_only=False))
    assert blobs and all(0 < step < 2000 for step, _ in blobs.values())
    before = {key: curves_from_state(from_bytes(blob)["curves"])
              for key, (_, blob) in blobs.items()}
    Sweep(cfg, tmp_path / "ray", dataset=DS).run()
    Sweep(dataclasses.replace(cfg, executor="vectorized"), tmp_path / "local", dataset=DS).run()
    assert store_points(tmp_path / "ray") == store_points(tmp_path / "local")  # bit for bit
    resumed = {r["key"]: r["curves"] for r in Store(tmp_path / "ray").runs()}
    for key, kept in before.items():  # went on from the checkpoint: its clocks are kept
        assert kept_in_store(resumed[key], kept)
    assert Store(tmp_path / "ray").checkpoint_steps() == {}


def test_a_shard_that_fails_every_attempt_stops_the_sweep_and_resume_completes_it(
        cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(ray_executor, "RETRIES", 0)
    monkeypatch.setenv(ray_executor.KILL_ONCE_ENV, f"0:{tmp_path / 'killed-once'}")
    with pytest.raises(ray_executor.ShardFailed, match="lost its worker on each of 1 attempts"):
        Sweep(sixteen("ray"), tmp_path / "ray", dataset=DS).run()
    assert len(Store(tmp_path / "ray").runs()) < 16  # shard 0 at least is not stored
    monkeypatch.delenv(ray_executor.KILL_ONCE_ENV)
    assert len(Sweep(sixteen("ray"), tmp_path / "ray", dataset=DS).run()) == 16


def sweep_args(npz: Path, out: Path, address: str) -> list[str]:
    """6 runs, one member a shard, so the kill finds some shards done and some not."""
    return ["sweep", "--dataset", f"npz:{npz}", "--model", "mlp", "--optimizers", "sgd,adam",
            "--lr", "0.03,0.3", "--beta1", "0.5,0.9", "--steps", "200", "--batch-size", "20",
            "--eval-every", "100", "--max-batch", "1", "--dtype", "float64",
            "--executor", "ray", "--ray-address", address, "--out", str(out)]


@pytest.mark.slow
def test_kill_9_of_the_driver_then_resume_gives_the_uninterrupted_store(cluster, tmp_path):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    killed = tmp_path / "killed"
    at_kill = kill_9_after_a_finished_run(sweep_args(tmp_path / "blobs.npz", killed, cluster),
                                          killed / "sweep.sqlite")
    assert 1 <= at_kill < 6, f"the kill came after {at_kill} of 6 runs"
    assert main(sweep_args(tmp_path / "blobs.npz", killed, cluster)) == 0  # resume
    whole = tmp_path / "whole"
    assert main(sweep_args(tmp_path / "blobs.npz", whole, cluster)) == 0
    assert comparable(killed) == comparable(whole)
    with sqlite3.connect(killed / "sweep.sqlite") as conn:
        assert conn.execute("SELECT count(*), sum(status = 'done') FROM runs").fetchone() == (6, 6)


WITHOUT_RAY = """
import sys
sys.modules["ray"] = None  # `import ray` now raises ImportError, as when it is not installed
from optimlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv", [["sweep", "--executor", "ray"],
                                  ["sweep-bench", "--rows", "vectorized,ray"]])
def test_without_ray_the_ray_executor_is_a_one_line_error(tmp_path, argv):
    done = subprocess.run([sys.executable, "-c", WITHOUT_RAY, *argv, "--out", str(tmp_path)]
                          if argv[0] == "sweep" else [sys.executable, "-c", WITHOUT_RAY, *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"optimlab {argv[0]}: error: "), done.stderr
    assert "pip install 'optimlab[ray]'" in lines[0]


@pytest.mark.parametrize("argv,match", [
    (["--ray-address", "127.0.0.1:1"], "Invalid --ray-address '127.0.0.1:1' with --executor"),
    (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "cannot reach it"),
    (["--executor", "ray", "--ray-address", "headnode"], "allowed: the head node's HOST:PORT"),
    (["--executor", "ray", "--device", "cuda"], "Invalid device 'cuda' with executor 'ray'"),
])
def test_bad_ray_address_exits_2_with_a_message(tmp_path, capsys, argv, match):
    assert main(["sweep", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_the_address_comes_from_ray_address_when_no_flag_gives_one(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert main(["sweep", "--executor", "ray", "--out", str(tmp_path)]) == 2
    assert "Invalid Ray address '127.0.0.1:1': cannot reach it" in capsys.readouterr().err


def test_sweep_bench_has_a_ray_row_with_its_overhead_and_the_same_results(cluster, tmp_path,
                                                                          capsys):
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    assert main(["sweep-bench", "--dataset", f"npz:{tmp_path / 'blobs.npz'}", "--optimizers",
                 "sgd,adam", "--lr", "0.01,0.1", "--steps", "30", "--batch-size", "20",
                 "--max-batch", "2", "--rows", "vectorized,ray", "--threads", "1",
                 "--json", str(tmp_path / "b.json")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["settings"]["sweep"]["max_batch"] == 2 and result["ray_init_s"] >= 0
    ray_row, local = result["rows"]["ray"], result["rows"]["vectorized"]
    overhead = ray_row["overhead_vs_vectorized"]
    assert overhead["wall_s"] == pytest.approx(ray_row["wall_s"] - local["wall_s"])
    assert overhead["ratio"] == pytest.approx(ray_row["wall_s"] / local["wall_s"])
    assert (f"{overhead['ratio']:.2f} (target ≤ 1.2)  Ray ≤ 1.2× the vectorized executor"
            in capsys.readouterr().out)
    assert [(g["value"], g["met"]) for g in result["goals"] if g["goal"].startswith("Ray")] == [
        (overhead["ratio"], overhead["ratio"] <= 1.2)]
    agreement = overhead["agreement"]
    assert agreement["same_diverged"]
    for key in ("final_val_acc", "final_test_acc", "final_train_loss"):
        assert agreement[f"max_abs_diff_{key}"] <= 1e-6, key


def test_ray_takes_the_vectorized_executors_halving_decisions(cluster, tmp_path):
    from test_halving import assert_same_runs, decisions, halving_cfg
    from test_halving import stored as halved

    Sweep(halving_cfg("ray"), tmp_path / "ray", dataset=DS).run()
    Sweep(halving_cfg(), tmp_path / "local", dataset=DS).run()
    assert decisions(tmp_path / "ray") == decisions(tmp_path / "local")
    assert_same_runs(halved(tmp_path / "ray"), halved(tmp_path / "local"))
