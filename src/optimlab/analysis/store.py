"""Reading the run store (`sweep.sqlite`, written by `optimlab.lab.store.Store`) without the
lab, and the compact encoding of a run's curves in it.

A run's curves are one binary value: the magic `OLC1`, a little-endian uint32 header
length, the header (JSON: `[[split, metric, n, "f4" | "f8"], ...]`), then per series its
n steps (int32), n train_seconds (float32) and n values, all little-endian. The values are
float32 where that holds each of them exactly (a float32 run's minibatch losses: 12 bytes
a point, where the JSON text this replaces took about 60), float64 otherwise (a float64
run's, and evaluations, which are averaged in float64): the store loses no value. The
clock keeps 7 significant digits, finer than it measures. A store written before (curves
as JSON text) is read as it was; curves in any other format are refused.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.analysis.records import CurvePoint, DamagedRecords

FILENAME = "sweep.sqlite"
MAGIC = b"OLC1"
_LENGTH = struct.Struct("<I")
_STEP: np.dtype[Any] = np.dtype("<i4")
_CLOCK: np.dtype[Any] = np.dtype("<f4")
_VALUES: dict[str, np.dtype[Any]] = {"f4": np.dtype("<f4"), "f8": np.dtype("<f8")}


def _value_type(values: np.ndarray) -> str:
    """"f4" when float32 holds every value exactly (NaN and Inf included), else "f8"."""
    with np.errstate(over="ignore"):
        exact = np.array_equal(values.astype(_VALUES["f4"]).astype(float), values,
                               equal_nan=True)
    return "f4" if exact else "f8"


def encode_curves(curves: Iterable[CurvePoint]) -> bytes:
    """A run's points as the store keeps them (see the module's docstring)."""
    series: dict[tuple[str, str], list[CurvePoint]] = {}
    for p in curves:
        series.setdefault((p.split, p.metric), []).append(p)
    heads, arrays = [], []
    for (split, metric), points in series.items():
        values = np.array([p.value for p in points], float)
        kind = _value_type(values)
        heads.append([split, metric, len(points), kind])
        arrays += [np.array([p.step for p in points], _STEP),
                   np.array([p.train_seconds for p in points], float).astype(_CLOCK),
                   values.astype(_VALUES[kind])]
    header = json.dumps(heads).encode()
    return b"".join([MAGIC, _LENGTH.pack(len(header)), header, *(a.tobytes() for a in arrays)])


def _decode_binary(blob: bytes) -> list[CurvePoint]:
    (length,) = _LENGTH.unpack_from(blob, len(MAGIC))
    offset = len(MAGIC) + _LENGTH.size
    header = json.loads(blob[offset:offset + length])
    offset += length
    keys, columns = [], []
    for split, metric, n, kind in header:
        arrays, dtypes = [], [_STEP, _CLOCK, _VALUES[kind]]
        for dtype in dtypes:
            arrays.append(np.frombuffer(blob, dtype, n, offset).astype(float))
            offset += n * dtype.itemsize
        keys += [(split, metric)] * n
        columns.append(arrays)
    if offset != len(blob):
        raise ValueError(f"{len(blob) - offset} bytes past the last series")
    if not columns:
        return []
    step, secs, value = (np.concatenate(c) for c in zip(*columns, strict=True))
    # by step; at a step, the minibatch loss (taken before the update) before the
    # evaluations (after it), as the training loop appends them
    order = np.lexsort((np.array([k[0] != "batch" for k in keys], bool), step))
    return [CurvePoint(s, t, keys[i][0], keys[i][1], v) for i, s, t, v in zip(
        order.tolist(), step[order].astype(int).tolist(), secs[order].tolist(),
        value[order].tolist(), strict=True)]


def _decode_json(text: str) -> list[CurvePoint]:
    """Curves as the store kept them before they were binary: JSON rows, null for NaN/Inf."""
    return [CurvePoint(s, t, sp, m, math.nan if v is None else v)
            for s, t, sp, m, v in json.loads(text)]


def decode_curves(stored: bytes | str) -> list[CurvePoint]:
    """A run's points from the store, in either format; ValueError naming the defect."""
    if isinstance(stored, str):
        return _decode_json(stored)
    if stored[:len(MAGIC)] != MAGIC:
        raise ValueError(f"curves in an unknown format (they begin {stored[:8]!r}; this "
                         f"version reads {MAGIC.decode()} and JSON text): written by another "
                         "optimlab version")
    try:
        return _decode_binary(stored)
    except (ValueError, TypeError, KeyError, struct.error) as e:
        raise ValueError(f"curves cut short or malformed ({e})") from None


def stored_runs(conn: sqlite3.Connection, *, done_only: bool = True) -> list[dict[str, Any]]:
    """Stored runs in planning order: {"key", "run", "status", "roles", "config",
    "summary" (record with "run" first), "curves" (list of CurvePoint)}."""
    roles: dict[str, list[str]] = {}
    for key, role in conn.execute("SELECT key, role FROM roles ORDER BY role"):
        roles.setdefault(key, []).append(role)
    where = "WHERE status = 'done'" if done_only else ""
    file = conn.execute("PRAGMA database_list").fetchone()[2]
    rows = conn.execute(
        f"SELECT key, name, status, config, summary, curves FROM runs {where} ORDER BY rowid")
    out = []
    for k, n, s, c, r, cv in rows:
        try:
            curves = decode_curves(cv) if cv else []
        except ValueError as e:
            raise DamagedRecords(f"{file}: run {n}: {e}") from None
        out.append({"key": k, "run": n, "status": s, "roles": roles.get(k, []),
                    "config": json.loads(c), "summary": {"run": n, **json.loads(r)} if r else None,
                    "curves": curves})
    return out


def stored_rungs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Successive halving's decisions (see `optimlab.lab.halving.decide`), by rung,
    optimizer and rank; none in a sweep without halving or a store from before it."""
    try:
        rows = conn.execute("SELECT decision FROM rungs").fetchall()
    except sqlite3.OperationalError:  # no such table
        return []
    decisions = [json.loads(d) for (d,) in rows]
    return sorted(decisions, key=lambda d: (d["rung"], d["optimizer"], d["rank"]))


def stored_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    return {n: json.loads(v) for n, v in conn.execute("SELECT name, value FROM meta")}


def open_store(folder: Path) -> sqlite3.Connection:
    """`folder`'s store, read-only (a report never writes it); DamagedRecords when the file
    is not a store."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a sweep folder: {FILENAME} is missing")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("SELECT key, name, status, config, summary, curves FROM runs LIMIT 0")
        conn.execute("SELECT key, role FROM roles LIMIT 0")
        conn.execute("SELECT name, value FROM meta LIMIT 0")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise DamagedRecords(f"{path} is damaged: not a run store ({e})") from None
    return conn


def read_runs(folder: Path) -> list[dict[str, Any]]:
    """The finished runs of `folder`'s store (see `stored_runs`)."""
    conn = open_store(folder)
    try:
        return stored_runs(conn)
    finally:
        conn.close()


def read_rungs(folder: Path) -> list[dict[str, Any]]:
    """The decisions `folder`'s store keeps (see `stored_rungs`)."""
    with closing(open_store(folder)) as conn:
        return stored_rungs(conn)


def read_meta(folder: Path) -> dict[str, Any]:
    """The settings `folder`'s store keeps (see `stored_meta`)."""
    conn = open_store(folder)
    try:
        return stored_meta(conn)
    finally:
        conn.close()
