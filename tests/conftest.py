"""Shared test helpers: a deterministic, parameter-dependent gradient field; a sweep
killed with SIGKILL right after its store committed a given number of runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The real MNIST test set lives beside the repository, not in it (../shared/data/mnist-t10k
# in a checkout and in CI); tests that need it say so when it is absent.
MNIST_T10K = REPO.parent / "shared" / "data" / "mnist-t10k"
needs_t10k = pytest.mark.skipif(
    not MNIST_T10K.is_dir(),
    reason=f"needs the real MNIST test set (mnist-t10k), which lives beside the repository, "
           f"not in it; absent here: {MNIST_T10K}")

SHAPES = [(4, 3), (5,), (2, 2, 2)]


class GradientField:
    """A deterministic gradient sequence that depends on the parameters and the step.

    kind="bowl": g = A w + 0.3 sin(w) + 0.05 cos(0.01 t + φ), a fixed A ≻ 0 per
    tensor; optimizers converge to its (moving) minimum.
    kind="slope": g = c + 0.5 sin(0.3 t + φ) + 0.1 tanh(A w) with |c| ≥ 0.8, so
    no component ever crosses zero. RMSprop needs it: near a minimum its step
    g/(√s + ε) flips with the sign of a vanishing g, a chaotic regime where
    any two correct float64 implementations part ways after ~100 steps.
    The same field in NumPy and torch; `sign=-1` flips it, for maximize=True.
    """

    def __init__(self, shapes=SHAPES, seed=0, sign=1.0, kind="bowl"):
        rng = np.random.default_rng(seed)
        self.shapes, self.sign, self.kind = shapes, sign, kind
        self.c = [rng.choice([-1.0, 1.0], int(np.prod(s))) * rng.uniform(0.8, 1.2, int(np.prod(s)))
                  for s in shapes]
        self.A, self.phase, self.w0 = [], [], []
        for shape in shapes:
            n = int(np.prod(shape))
            m = rng.standard_normal((n, n))
            self.A.append(m @ m.T / n + 0.1 * np.eye(n))
            self.phase.append(rng.uniform(0, 2 * np.pi, n))
            self.w0.append(rng.standard_normal(n))

    def grad(self, i: int, w: np.ndarray, t: int) -> np.ndarray:
        if self.kind == "slope":
            g = self.c[i] + 0.5 * np.sin(0.3 * t + self.phase[i]) + 0.1 * np.tanh(self.A[i] @ w)
        else:
            g = self.A[i] @ w + 0.3 * np.sin(w) + 0.05 * np.cos(0.01 * t + self.phase[i])
        return self.sign * g

    def torch_params(self, dtype=torch.float64) -> list[torch.Tensor]:
        return [torch.tensor(w.reshape(s), dtype=dtype, requires_grad=True)
                for w, s in zip(self.w0, self.shapes)]

    def set_torch_grads(self, params: list[torch.Tensor], t: int) -> None:
        for i, p in enumerate(params):
            w = p.detach().to(torch.float64).reshape(-1).numpy()
            p.grad = torch.tensor(self.grad(i, w, t).reshape(p.shape), dtype=p.dtype)


@pytest.fixture(autouse=True)
def checkpoint_at_every_tenth(monkeypatch):
    """The tests' runs take milliseconds, which `train.checkpoint.MIN_S` would spare every
    checkpoint of a tenth: they checkpoint as a longer run does (the cadence's own test
    puts MIN_S back)."""
    from optimlab.train import checkpoint
    monkeypatch.setattr(checkpoint, "MIN_S", 0.0)


def max_rel_err(x: np.ndarray, ref: np.ndarray) -> float:
    """max |x − ref| / |ref|, with |ref| floored at 1e-3·max|ref| so zeros don't blow it up."""
    floor = 1e-3 * max(float(np.abs(ref).max()), 1e-300)
    return float((np.abs(x - ref) / np.maximum(np.abs(ref), floor)).max())


@pytest.fixture
def field() -> GradientField:
    return GradientField()


def store_count(db: Path, query: str) -> int:
    """The count `query` gives in the sweep store `db` (0 before it exists or while it is
    locked)."""
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute(query).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked by the writer
        return 0


def done_count(db: Path) -> int:
    """Finished runs in the sweep store `db`."""
    return store_count(db, "SELECT count(*) FROM runs WHERE status = 'done'")


# The child of `kill_9_after_a_finished_run`: the CLI, with the sweep's batches of
# BATCH runs, and the store's commit patched to announce (a file appears) and then wait:
# after the commit that holds the `after`-th finished run, or ("during") inside the
# transaction of the `after`-th batch, before its commit.
_KILL_AFTER = """
import sys, time
from pathlib import Path
import optimlab.lab.store as store
import optimlab.lab.sweep as sweep
after, flag, batch, when = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sweep.BATCH_RUNS = batch
write, flush, writes = store.Store._write, store.Store.flush, []
def wait():
    flag.touch()
    time.sleep(600)
def patched_write(self, rows):
    write(self, rows)
    writes.append(len(rows))
    if when == "during" and len(writes) == after:
        wait()
def patched_flush(self):
    flush(self)
    if when == "after" and sum(writes) >= after:
        wait()
store.Store._write, store.Store.flush = patched_write, patched_flush
from optimlab.cli import main
raise SystemExit(main(sys.argv[5:]))
"""


def kill_9_after_a_finished_run(argv: list[str], db: Path, timeout: float = 120,
                                after: int = 1, batch: int = 1, when: str = "after",
                                stdout: Path | None = None) -> int:
    """Run `optimlab ARGV` (the sweep committing `batch` runs at a time) and SIGKILL it right
    after the store `db` committed its `after`-th finished run, or with `when="during"`
    inside the transaction of its `after`-th batch (the child waits there, so the kill
    lands at the same place every time); the number of finished runs it left. `stdout`:
    a file that receives what the child printed, unbuffered."""
    flag = db.parent.with_name(db.parent.name + ".killed-here")
    out = stdout.open("w") if stdout else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-u", "-c", _KILL_AFTER, str(after), str(flag),
                             str(batch), when, *argv], stdout=out, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not flag.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, f"the sweep wrote no {after} runs in {timeout} s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if stdout:
        out.close()
    return done_count(db)


def exit_code(argv: list[str]) -> int:
    """`optimlab.cli.main(argv)`'s exit code, argparse's own errors (SystemExit) included."""
    from optimlab.cli import main

    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    """A small 3-class npz dataset: 120 rows, 86 of them for training."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    np.savez(path, x=(rng.normal(0, 1, (120, 6)) + y[:, None]).astype(np.float32), y=y)
    return path
