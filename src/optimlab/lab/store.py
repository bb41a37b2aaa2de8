"""The run store of sweep, compare and reproduce: one SQLite file, one row per configuration.

Table `runs`: key (a hash of the config), name, status ("pending", "running", "done"),
config, summary (the `summary_record`), curves (binary float32 arrays per series, see
`optimlab.analysis.store`; JSON text in stores of earlier versions, still read), updated
(unix time). Table `roles`: (key, role) — why a run exists ("grid", "one-shot", "tuned";
"compare"). Table `meta`: settings of the last invocation. Table `checkpoints`: key, step,
state (the bytes of `optimlab.train.checkpoint`), updated — the latest checkpoint of each
run in flight, removed when the run finishes. Table `rungs`: successive halving's
decisions (see `optimlab.lab.halving.decide`), one row per rung and configuration.

A finished run is written in one transaction (summary, curves and status together), so
a crash or `kill -9` loses at most the runs in flight; those stay "pending"/"running"
and run again on resume, from their checkpoint when they have one (the checkpoints of a
group of runs are written in one transaction too). A store opened with `batch_runs > 1`
(the sweep's) commits finished runs in batches, one transaction each: a commit waits for
the disk, and one per run capped the driver near its rate. A batch is written when it
holds `batch_runs` runs, when its oldest has waited `batch_seconds` (`due`, asked by the
caller between steps), and before any read; each run's `then` (its report) comes after its
commit, so a `kill -9` loses only runs that were never reported finished, and they run
again on resume. A rung's decision is one transaction as well: its rows, the stopped runs
finished as pruned, the others' checkpoints at the rung.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from optimlab.analysis.store import (
    FILENAME,
    encode_curves,
    stored_meta,
    stored_rungs,
    stored_runs,
)
from optimlab.lab.experiment import output_folder
from optimlab.train import CurvePoint, TrainConfig

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL,
    summary TEXT, curves TEXT, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS roles (key TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (key, role));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS checkpoints (
    key TEXT PRIMARY KEY, step INTEGER NOT NULL, state BLOB NOT NULL, updated REAL NOT NULL);
-- a run stored as finished by a process killed before it dropped its checkpoint
DELETE FROM checkpoints WHERE key IN (SELECT key FROM runs WHERE status = 'done');
CREATE TABLE IF NOT EXISTS rungs (
    rung INTEGER NOT NULL, optimizer TEXT NOT NULL, point TEXT NOT NULL, decision TEXT NOT NULL,
    PRIMARY KEY (rung, optimizer, point));
"""
# A checkpoint: the configuration, the step it was taken after, its bytes.
Checkpoint = tuple[TrainConfig, int, bytes]
# A finished run waiting for its batch's commit: key, name, summary (JSON), curves (encoded),
# and what to call once it is committed.
_Pending = tuple[str, str, str, bytes, Callable[[], None] | None]


def config_key(config: TrainConfig) -> str:
    """Stable across processes and sessions: a hash of the canonical JSON of the config."""
    text = json.dumps(config.to_dict(), sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def run_name(config: TrainConfig, point: bool = True) -> str:
    """E.g. `adam-lr0.001-betas0.9,0.999-seed0`: readable, unique within a sweep; without
    the `point` (`adam-seed0`), unique where a label fixes the hyperparameters (compare)."""
    parts = [config.label]
    for k, v in sorted(config.hyperparameters.items()) if point else ():
        text = ",".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else f"{v:g}"
        parts.append(f"{k}{text}")
    return "-".join([*parts, f"seed{config.seed}"])


def _pending(config: TrainConfig, record: dict[str, Any], curves: Iterable[CurvePoint],
             then: Callable[[], None] | None = None) -> _Pending:
    """A finished run as its batch holds it until the commit."""
    return (config_key(config), run_name(config), json.dumps(record, allow_nan=False),
            encode_curves(curves), then)


class Store:
    """The SQLite file `out/sweep.sqlite` (created on first use, reopened to resume)."""

    def __init__(self, out: str | Path, batch_runs: int = 1, batch_seconds: float = 1.0) -> None:
        """`batch_runs`: finished runs committed together at most (1: each at once);
        `batch_seconds`: how long the oldest of them waits at most (see `due`)."""
        self.out = output_folder(out, "sweep")
        self.path = self.out / FILENAME
        self.batch_runs, self.batch_seconds = batch_runs, batch_seconds
        self.pending: list[_Pending] = []
        self.since = 0.0  # when the oldest pending run finished (time.monotonic)
        try:
            self.conn = sqlite3.connect(self.path)
            self.conn.executescript(_SCHEMA)
            self.conn.executescript(_CHECKPOINTS)
        except sqlite3.DatabaseError as e:
            raise ValueError(f"Invalid --out {str(self.out)!r}: {self.path.name} is not a "
                             f"sweep store ({e})") from None

    def close(self) -> None:
        self.flush()
        self.conn.close()

    def plan(self, configs: Iterable[TrainConfig], role: str, point: bool = True) -> None:
        """Add configurations not yet stored (as pending) and tag them with `role`; `point`:
        their names hold their hyperparameters (see `run_name`)."""
        now = time.time()
        with self.conn:
            for c in configs:
                key = config_key(c)
                self.conn.execute(
                    "INSERT OR IGNORE INTO runs (key, name, status, config, updated) "
                    "VALUES (?, ?, 'pending', ?, ?)",
                    (key, run_name(c, point), json.dumps(c.to_dict(), allow_nan=False), now))
                self.conn.execute("INSERT OR IGNORE INTO roles VALUES (?, ?)", (key, role))

    def unfinished(self, configs: Iterable[TrainConfig]) -> list[TrainConfig]:
        """The configurations among `configs` that have no finished run yet."""
        self.flush()
        done = {k for (k,) in self.conn.execute("SELECT key FROM runs WHERE status = 'done'")}
        return [c for c in configs if config_key(c) not in done]

    def mark_running(self, configs: Iterable[TrainConfig]) -> None:
        with self.conn:
            self.conn.executemany(
                "UPDATE runs SET status = 'running', updated = ? WHERE key = ?",
                [(time.time(), config_key(c)) for c in configs])

    def finish(self, config: TrainConfig, record: dict[str, Any],
               curves: Iterable[CurvePoint], then: Callable[[], None] | None = None) -> None:
        """Store a finished run: summary, curves and status, and drop its checkpoint, in one
        transaction, with the rest of its batch; `then` is called once it is committed."""
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append(_pending(config, record, curves, then))
        if len(self.pending) >= self.batch_runs:
            self.flush()

    def due(self) -> bool:
        """Whether the pending runs have waited `batch_seconds` (time to `flush`)."""
        return bool(self.pending) and time.monotonic() - self.since >= self.batch_seconds

    def flush(self) -> None:
        """Commit the pending runs in one transaction, then call their `then`s. A failed
        commit leaves them unfinished in the store (they run again on resume)."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        with self.conn:
            self._write(batch)
        for *_, then in batch:
            if then is not None:
                then()

    def _write(self, batch: list[_Pending]) -> None:
        now = time.time()
        cur = self.conn.executemany(
            "UPDATE runs SET status = 'done', summary = ?, curves = ?, updated = ? "
            "WHERE key = ?", [(summary, blob, now, key) for key, _, summary, blob, _ in batch])
        if cur.rowcount != len(batch):
            planned = {k for (k,) in self.conn.execute("SELECT key FROM runs")}
            names = ", ".join(name for key, name, *_ in batch if key not in planned)
            raise KeyError(f"run {names} was not planned in {self.path}")
        self.conn.executemany("DELETE FROM checkpoints WHERE key = ?",
                              [(key,) for key, *_ in batch])

    def record_rung(self, decisions: list[dict[str, Any]], kept: Iterable[Checkpoint],
                    pruned: Iterable[tuple[TrainConfig, dict[str, Any], list[CurvePoint]]]
                    ) -> None:
        """A rung's decision in one transaction: its rows, the checkpoints at the rung of
        the runs that go on (`kept`), and the runs stopped there finished (`pruned`: config,
        record, curves). A crash leaves the rung decided in full or not at all."""
        self.flush()
        now = time.time()
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO rungs VALUES (?, ?, ?, ?)", [
                (d["rung"], d["optimizer"], json.dumps(d["hyperparameters"], sort_keys=True),
                 json.dumps(d, allow_nan=False)) for d in decisions])
            self.conn.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                                  [(config_key(c), step, blob, now) for c, step, blob in kept])
            stopped = [_pending(c, record, curves) for c, record, curves in pruned]
            if stopped:
                self._write(stopped)

    def rungs(self) -> list[dict[str, Any]]:
        """Every decision recorded (see `optimlab.analysis.store.stored_rungs`)."""
        return stored_rungs(self.conn)

    def diverged(self) -> list[dict[str, Any]]:
        """The configs of the finished runs that diverged, read without their curves."""
        self.flush()
        rows = self.conn.execute("SELECT config, summary FROM runs WHERE status = 'done'")
        return [json.loads(c) for c, s in rows if json.loads(s)["diverged"]]

    def set_meta(self, name: str, value: Any) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                              (name, json.dumps(value, allow_nan=False)))

    def meta(self) -> dict[str, Any]:
        return stored_meta(self.conn)

    def runs(self, *, done_only: bool = True) -> list[dict[str, Any]]:
        """Stored runs in planning order (see `optimlab.analysis.store.stored_runs`)."""
        self.flush()
        return stored_runs(self.conn, done_only=done_only)

    def save_checkpoints(self, checkpoints: Iterable[Checkpoint]) -> None:
        """Keep each run's latest checkpoint, all in one transaction; a run already finished
        keeps none (its checkpoint can arrive after its result)."""
        now = time.time()
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO checkpoints SELECT ?, ?, ?, ? WHERE NOT EXISTS "
                "(SELECT 1 FROM runs WHERE key = ? AND status = 'done')",
                [(key, step, blob, now, key) for key, step, blob in
                 ((config_key(c), step, blob) for c, step, blob in checkpoints)])

    def checkpoints(self, configs: Iterable[TrainConfig]) -> dict[str, tuple[int, bytes]]:
        """config key -> (step, bytes) of the stored checkpoints of `configs`."""
        keys = {config_key(c) for c in configs}
        rows = self.conn.execute("SELECT key, step, state FROM checkpoints")
        return {k: (step, blob) for k, step, blob in rows if k in keys}

    def in_flight(self) -> list[str]:
        """The names of the planned runs not finished yet, in planning order."""
        return [n for (n,) in self.conn.execute(
            "SELECT name FROM runs WHERE status != 'done' ORDER BY rowid")]

    def finished_count(self) -> int:
        self.flush()
        return int(self.conn.execute(
            "SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0])

    def checkpoint_steps(self) -> dict[str, int]:
        """run name -> the step of its checkpoint, for every run that has one."""
        self.flush()
        return dict(self.conn.execute("SELECT name, step FROM checkpoints JOIN runs "
                                      "USING (key) ORDER BY runs.rowid"))

    def drop_checkpoint(self, config: TrainConfig) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM checkpoints WHERE key = ?", (config_key(config),))
