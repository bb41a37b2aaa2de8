"""The records of runs as plain data, and their readers (torch-free).

- `CurvePoint`: one point of a run's curves; `CURVE_COLUMNS`: curves.csv's header;
- `read_json`, `read_summary_file`, `read_summary`, `read_curves`, `load_compare`: a compare
  folder's files;
- `Curves`: curves as arrays per run and (split, metric), what the figures draw;
- `write_curves_csv`: curves.csv from runs' points (a sweep writes it on demand).

A report is only as honest as its records: a `summary.json` cut short, or a `curves.csv`
whose last line stops mid-row (a full disk, a copy interrupted), must stop the report
with a message that names the file and what is wrong, never render half a row.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class CurvePoint(NamedTuple):
    """One row of curves.csv (the lab adds the run's name as a first column)."""

    step: int
    train_seconds: float  # training wall clock up to this step, evaluation excluded
    split: str  # "batch" (every step) or "train" / "val" / "test" (every eval_every steps)
    metric: str  # "loss" (the task's: cross-entropy or squared error) or "acc" (fraction correct)
    value: float


# curves.csv, in long format: one row per evaluated (run, step, split, metric).
CURVE_COLUMNS = ("run", "step", "train_seconds", "split", "metric", "value")

# run -> (split, metric) -> columns: step, train_seconds, value
Curves = dict[str, dict[tuple[str, str], dict[str, np.ndarray]]]
Rows = dict[str, dict[tuple[str, str], list[tuple[float, float, float]]]]

SUMMARY_KEYS = ("run", "optimizer", "hyperparameters", "seed")


class DamagedRecords(ValueError):
    """A record file exists but cannot be read as what it should be."""


def finite_or_none(x: float | None) -> float | None:
    """JSON has no NaN/Inf: a non-finite number is recorded as null."""
    return x if x is not None and math.isfinite(x) else None


def family(record: dict[str, Any]) -> str:
    """The run family (the optimizer entry's label) of a summary record or a stored config;
    a record without a label (written before entries had labels): its optimizer's name."""
    return str(record.get("label") or record["optimizer"])


def member_steps(records: list[dict[str, Any]]) -> int:
    """The optimizer steps all runs took together, from their summary records (each
    run's "steps", which its `steps_trained` repeats)."""
    return sum(int(r["steps"]) for r in records)


def read_json(path: Path) -> Any:
    """The JSON in `path`; a DamagedRecords naming the file and the defect otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DamagedRecords(f"{path} is damaged: not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise DamagedRecords(f"{path} is damaged: the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        # a JSON document ends with its closing bracket; a file that does not was cut short
        cut = "; the file ends mid-document: it was cut short" if text.rstrip()[-1] not in "]}" \
            else ""
        raise DamagedRecords(f"{path} is damaged: not valid JSON at line {e.lineno} column "
                             f"{e.colno}: {e.msg}{cut}") from None


def read_summary_file(path: Path) -> dict[str, Any]:
    """summary.json as its writer left it: {"runs": [run records, each with at least
    SUMMARY_KEYS], and the sections the writer adds: "comparisons" (compare, once every run
    has ended), "expected_best" and "budget" (a sweep's budget curves), ...}. A file of an
    earlier version, a bare list of run records, reads as {"runs": that list}."""
    summary = read_json(path)
    if isinstance(summary, list):
        summary = {"runs": summary}
    if not isinstance(summary, dict) or not isinstance(summary.get("runs"), list):
        raise DamagedRecords(f"{path} is damaged: expected an object with a list \"runs\" of "
                             f"run records, found {type(summary).__name__}")
    for i, r in enumerate(summary["runs"]):
        missing = [k for k in SUMMARY_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            raise DamagedRecords(f"{path} is damaged: record {i} lacks {', '.join(missing)}")
    return summary


def read_summary(path: Path) -> list[dict[str, Any]]:
    """The run records of summary.json (see `read_summary_file`)."""
    return list(read_summary_file(path)["runs"])


def _curve_rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of every data row, after checking the header and the ending."""
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        last = raw.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
        line = raw.count(b"\n") + 1
        raise DamagedRecords(f"{path} is damaged: line {line} is cut off mid-row ({last!r}, "
                             "no line break at the end of the file)")
    rows = csv.reader(raw.decode("utf-8", "replace").splitlines())
    header = next(rows, None)
    if header != list(CURVE_COLUMNS):
        raise DamagedRecords(f"{path} is damaged: header {header}; expected "
                             f"{','.join(CURVE_COLUMNS)}")
    for number, fields in enumerate(rows, start=2):
        if len(fields) != len(CURVE_COLUMNS):
            raise DamagedRecords(f"{path} is damaged: line {number} has {len(fields)} fields, "
                                 f"expected {len(CURVE_COLUMNS)}: {','.join(fields)!r}")
        yield number, fields


def read_curves(path: Path) -> Curves:
    """curves.csv as arrays per run and (split, metric); DamagedRecords on any bad line."""
    rows: Rows = defaultdict(lambda: defaultdict(list))
    for number, (run, step, secs, split, metric, value) in _curve_rows(path):
        try:
            point = (float(int(step)), float(secs), float(value))
        except ValueError:
            raise DamagedRecords(f"{path} is damaged: line {number} has a non-number in "
                                 f"step, train_seconds or value: {step!r}, {secs!r}, "
                                 f"{value!r}") from None
        rows[run][(split, metric)].append(point)
    return curves_from_rows(rows)


def curves_from_rows(rows: Rows) -> Curves:
    return {run: {key: dict(zip(("step", "train_seconds", "value"), np.array(v, float).T))
                  for key, v in series.items()} for run, series in rows.items()}


def curves_of_store_runs(runs: list[dict[str, Any]]) -> Curves:
    """The same arrays from a store's runs (their CurvePoint lists)."""
    rows: Rows = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for p in run["curves"]:
            value = p.value if p.value is not None else math.nan
            rows[run["run"]][(p.split, p.metric)].append((p.step, p.train_seconds, value))
    return curves_from_rows(rows)


def load_compare(out_dir: Path) -> tuple[dict[str, Any], dict[str, Any], Curves]:
    """(config.json, summary.json as `read_summary_file` gives it, curves.csv) of a compare
    folder, each checked."""
    for name in ("config.json", "summary.json", "curves.csv"):
        if not (out_dir / name).is_file():
            raise FileNotFoundError(f"{out_dir} is not a compare folder: {name} is missing")
    meta = read_json(out_dir / "config.json")
    if not isinstance(meta, dict):
        raise DamagedRecords(f"{out_dir / 'config.json'} is damaged: expected an object")
    return meta, read_summary_file(out_dir / "summary.json"), read_curves(out_dir / "curves.csv")


def _shortest(xs: Sequence[float]) -> list[str | float]:
    """Each of `xs` with the fewest digits that give it back: a float32's (a clock, a float32
    run's loss) as float32, any other as Python writes it. Vectorized: a run's curves hold
    thousands of points (one numpy scalar per value took 3x as long)."""
    x = np.array(xs, float)
    with np.errstate(over="ignore"):
        f = x.astype(np.float32)
    exact = (f.astype(float) == x).tolist()
    return [t if e else v for v, t, e in zip(xs, f.astype(str).tolist(), exact, strict=True)]


def write_curves_csv(path: Path, runs: Iterable[tuple[str, Iterable[CurvePoint]]],
                     append: bool = False) -> Path:
    """curves.csv at `path` from (run name, points) pairs, replaced atomically (a reader
    never sees half a file), or with `append` added at its end (a new file gets the header)."""
    target = path if append else path.with_name(path.name + ".tmp")
    header = not (append and path.is_file())
    with target.open("a" if append else "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(CURVE_COLUMNS)
        for run, points in runs:
            points = list(points)
            clocks = _shortest([p.train_seconds for p in points])
            values = _shortest([p.value for p in points])
            w.writerows((run, p.step, t, p.split, p.metric, v)
                        for p, t, v in zip(points, clocks, values, strict=True))
    if not append:
        os.replace(target, path)
    return path
