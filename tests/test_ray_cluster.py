"""The Ray executor on a real cluster of two nodes on this machine: a head and a worker node,
each a `ray start` process of one CPU, and the sweep driven from a third process. The
worker node is killed mid-sweep: nothing finished is lost, the rest completes on the head,
and the store equals the local vectorized executor's."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import done_count
from test_sweep import DS, comparable

from optimlab.lab.grid import settings
from optimlab.lab.sweep import Sweep

RAY = str(Path(sys.executable).with_name("ray"))
# Token authentication off: the three processes run as one user on one machine, and a
# token would be written into the home folder
# 9 runs of 2000 steps, one shard each: long enough that the worker node still trains a
# shard when the first finished run is committed (a second after it ends), on a quiet machine
SWEEP = {"model": "mlp", "optimizers": "sgd,adam", "lr": "0.03,0.1,0.3", "beta1": "0.5,0.9",
         "steps": 2000, "batch_size": 20, "eval_every": 500, "max_batch": 1,
         "dtype": "float64"}
ENV = os.environ | {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def start_node(log: Path, *args: str) -> subprocess.Popen:
    """`ray start --block ARGS` in a session of its own (killed as a group), one CPU, a
    small object store; returns once the node runs."""
    proc = subprocess.Popen([RAY, "start", "--block", "--num-cpus", "1",
                             "--object-store-memory", str(80 * 2**20), *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while "Ray runtime started" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no Ray node in 60 s: {log.read_text()}"
        time.sleep(0.1)
    return proc


def node_processes(proc: subprocess.Popen) -> dict[int, str]:
    """pid -> command line of the processes of the node that `proc` started: its process
    group, and the workers its raylet started (each in a session of its own)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True,
                           text=True, check=True).stdout
    rows = [line.split(None, 3) for line in table.splitlines() if line.strip()]
    group = {pid for pid, _, pgid, *_ in rows if pgid == str(proc.pid)}
    return {int(pid): rest[0] if rest else "" for pid, ppid, _, *rest in rows
            if pid in group or ppid in group}


def training(proc: subprocess.Popen) -> bool:
    """Whether a worker of the node is training a shard (Ray names a worker process after
    the task it runs)."""
    return any("_train_shard" in args for args in node_processes(proc).values())


def kill_node(proc: subprocess.Popen) -> None:
    """SIGKILL every process of the node (raylet, object store, workers) at once."""
    for pid in node_processes(proc):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # ended meanwhile
            pass
    proc.wait()


@pytest.fixture
def two_nodes(tmp_path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A head and a worker node: (the head's address, the worker node's process). Their
    files live in a temporary folder of their own, so no other Ray on this machine finds
    or joins them (short: Ray's socket paths must stay under ~100 characters)."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    nodes = [start_node(tmp_path / "head.log", "--head", "--port", "0", "--temp-dir", temp,
                        "--include-dashboard", "false")]
    try:
        address = (Path(temp) / "ray_current_cluster").read_text().strip()
        nodes.append(start_node(tmp_path / "worker.log", "--address", address))
        yield address, nodes[1]
    finally:
        for proc in nodes:
            if proc.poll() is None:
                kill_node(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_worker_node_killed_mid_sweep_loses_nothing_finished_and_the_head_completes(
        two_nodes, tmp_path):
    address, worker = two_nodes
    np.savez(tmp_path / "blobs.npz", x=DS.x_train.numpy(), y=DS.y_train.numpy())
    out = tmp_path / "ray"
    argv = ["sweep", "--dataset", f"npz:{tmp_path / 'blobs.npz'}", "--threads", "1",
            "--executor", "ray", "--ray-address", address, "--out", str(out),
            *(x for k, v in SWEEP.items() for x in (f"--{k.replace('_', '-')}", str(v)))]
    driver = subprocess.Popen([sys.executable, "-m", "optimlab", *argv], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    # the kill finds a run finished, and a shard in training on the worker node
    while done_count(out / "sweep.sqlite") == 0 or not training(worker):
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        assert time.monotonic() < deadline, "no finished run and a busy worker node in 60 s"
        time.sleep(0.1)
    with sqlite3.connect(out / "sweep.sqlite") as conn:
        before = conn.execute("SELECT key, summary, curves FROM runs WHERE status = 'done'"
                              ).fetchall()
    kill_node(worker)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 0, err
    with sqlite3.connect(out / "sweep.sqlite") as conn:
        after = conn.execute("SELECT key, summary, curves FROM runs").fetchall()
    assert set(before) <= set(after) and len(after) == 9  # every finished run, as it was
    assert done_count(out / "sweep.sqlite") == 9
    local = tmp_path / "local"
    Sweep(settings({}, SWEEP | {"dataset": f"npz:{tmp_path / 'blobs.npz'}"}), local).run()
    assert comparable(out) == comparable(local)
