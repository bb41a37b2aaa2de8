"""Records without torch, and compact: `optimlab report` and `optimlab export csv` read every
folder the lab writes with torch not importable; the store keeps a run's curves as float32
arrays (12 bytes a point), writes curves.csv only on demand, and still reads the stores of
the previous version (curves as JSON text)."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_sweep import DS as BLOBS

from optimlab.analysis.records import CurvePoint
from optimlab.analysis.store import decode_curves, encode_curves, read_runs
from optimlab.cli import main
from optimlab.lab import reproduce
from optimlab.lab.compare import CompareConfig, run_compare
from optimlab.lab.grid import SweepConfig
from optimlab.lab.store import Store
from optimlab.lab.sweep import Sweep
from optimlab.landscape import LandscapeConfig, run_landscape
from optimlab.landscape.functions import FUNCTIONS, surface
from optimlab.train import TrainConfig

SPLITS = [(s, m) for s in ("train", "val", "test") for m in ("loss", "acc")]


def made_up_points() -> list[CurvePoint]:
    """A float32 run's points in the training loop's order: evaluations (averaged in
    float64) at step 0 and every 100 steps, a float32 minibatch loss at every step before
    them, a NaN and an Inf among those."""
    rng = np.random.default_rng(0)
    points = [CurvePoint(0, 0.0, s, m, float(rng.random())) for s, m in SPLITS]
    t = 0.0
    for step in range(1, 301):
        t += float(rng.uniform(1e-3, 2e-3))
        loss = {7: math.nan, 8: math.inf}.get(step, float(np.float32(rng.normal(1, 0.1))))
        points.append(CurvePoint(step, t, "batch", "loss", loss))
        if step % 100 == 0:
            points += [CurvePoint(step, t, s, m, float(rng.random())) for s, m in SPLITS]
    return points


def same(a: list[CurvePoint], b: list[CurvePoint]) -> bool:
    """Equal point for point, NaN equal to NaN."""
    return len(a) == len(b) and all(
        p[:4] == q[:4] and (p.value == q.value or math.isnan(p.value) and math.isnan(q.value))
        for p, q in zip(a, b))


def test_curves_round_trip_in_order_values_exact_at_12_bytes_a_float32_point():
    points = made_up_points()
    blob = encode_curves(points)
    evaluations = sum(p.split != "batch" for p in points)
    # float32 minibatch losses: 12 bytes; float64 evaluations: 16; the header names 7 series
    assert len(blob) <= 12 * len(points) + 4 * evaluations + 250
    got = decode_curves(blob)
    clocks = [float(np.float32(p.train_seconds)) for p in points]  # NumPy's float32 rounding
    assert same(got, [p._replace(train_seconds=c) for p, c in zip(points, clocks)])


def test_values_float32_cannot_hold_are_kept_in_float64():
    one = [CurvePoint(s, 0.5 * s, "batch", "loss", v)
           for s, v in enumerate((0.1, 1e39, -1e-50, 2.0 ** -3), start=1)]
    assert decode_curves(encode_curves(one)) == one  # clocks exact in float32 here
    assert len(encode_curves(one)) >= 4 * (4 + 4 + 8)
    assert decode_curves(encode_curves([])) == []


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A folder of each command that writes one: compare, sweep, landscape, reproduce."""
    base = tmp_path_factory.mktemp("records")
    run_compare(CompareConfig(model="logreg", optimizers=("sgd", "adam"), steps=12,
                              eval_every=4, seeds=1, batch_size=20), base / "compare",
                dataset=BLOBS)
    Sweep(SweepConfig(dataset="blobs", model="logreg", optimizers=("sgd", "adam"),
                      grid={"lr": (0.03, 0.3)}, steps=30, batch_size=20, eval_every=10),
          base / "sweep", dataset=BLOBS).run()
    (base / "landscape").mkdir()
    record = run_landscape(LandscapeConfig(functions=("bumpy",), optimizers=("sgd", "adam"),
                                           steps=20, lr_grid=(0.01, 0.1)))
    (base / "landscape" / "paths.json").write_text(json.dumps(record))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(reproduce.EXPERIMENTS, "tiny", Tiny("tiny", "a test", "it trains", ""))
        reproduce.run("tiny", base / "reproduce")
    return {name: base / name for name in ("compare", "sweep", "landscape", "reproduce")}


@dataclass(frozen=True)
class Tiny(reproduce.Experiment):
    """A reproduction of two short runs through the reproductions' own store."""

    def run(self, ctx: reproduce.Context) -> reproduce.Outcome:
        configs = [TrainConfig(dataset="blobs", model="logreg", optimizer=o, steps=10,
                               hyperparameters={"lr": 0.1}, batch_size=20, eval_every=5)
                   for o in ("sgd", "adam")]
        runs = reproduce.train(ctx, configs, BLOBS)
        acc = runs[1]["summary"]["final_test_acc"]
        curve = [[p.step, p.value] for p in runs[1]["curves"] if p.split == "batch"]
        return reproduce.Outcome(
            "blobs", [reproduce.Setting("steps", 10, "choice: a test")],
            [reproduce.Check("Adam learns", "> 50%", f"{acc:.0%}", acc > 0.5)], {"acc": acc},
            {"title": "loss", "xlabel": "step", "ylabel": "loss", "log_y": False,
             "panels": {"adam": {"adam": curve}}})


# `import torch` fails as on a machine without it. Not sys.modules["torch"] = None: scipy's
# array-API helpers take a "torch" key in sys.modules for an imported torch and read it.
NO_TORCH = """import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoTorch())
"""


def without_torch(code: str) -> str:
    """Run `code` in a fresh interpreter where `import torch` fails; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH + textwrap.dedent(code)], capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_report_and_csv_export_run_with_torch_not_importable(folders):
    for folder in folders.values():
        (folder / "report.html").unlink(missing_ok=True)
    out = without_torch(f"""
        from optimlab.cli import main
        folders = {[str(f) for f in folders.values()]}
        codes = [main(["report", f]) for f in folders]
        codes += [main(["export", "csv", folders[1]])]
        import optimlab.report.tensorboard  # the export reads records without the lab
        print("codes", codes, "train imported:", "optimlab.train" in sys.modules)
        """)
    assert out.splitlines()[-1] == "codes [0, 0, 0, 0, 0] train imported: False"
    assert all((f / "report.html").stat().st_size > 1000 for f in folders.values())


def csv_rows(path):
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_a_sweep_writes_curves_csv_on_demand_from_its_store(folders, capsys):
    out = folders["sweep"]
    (out / "curves.csv").unlink(missing_ok=True)
    assert main(["export", "csv", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"4 runs' curves in {out / 'curves.csv'}"
    header, *rows = csv_rows(out / "curves.csv")
    assert header == ["run", "step", "train_seconds", "split", "metric", "value"]
    stored = [(r["run"], p) for r in Store(out).runs() for p in r["curves"]]
    assert [(r[0], int(r[1]), r[3], r[4]) for r in rows] == [
        (run, p.step, p.split, p.metric) for run, p in stored]
    # each number written with the fewest digits that give it back: float32's for a float32
    assert [np.float32(r[2]) for r in rows] == [np.float32(p.train_seconds) for _, p in stored]
    for r, (_, p) in zip(rows, stored):
        exact = float(np.float32(p.value)) == p.value
        assert (np.float32(r[5]) == np.float32(p.value)) if exact else float(r[5]) == p.value
    assert any(float(r[5]) != p.value for r, (_, p) in zip(rows, stored))  # some shortened


def test_export_csv_of_a_compare_folder_keeps_its_csv_and_refuses_other_folders(
        folders, tmp_path, capsys):
    before = (folders["compare"] / "curves.csv").read_bytes()
    assert main(["export", "csv", str(folders["compare"])]) == 0
    assert (folders["compare"] / "curves.csv").read_bytes() == before
    assert main(["export", "csv", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"optimlab export: error: Invalid RUN_DIR {str(tmp_path)!r}")
    assert len(err.strip().splitlines()) == 1
    assert main(["export", "csv", str(folders["sweep"]), "--logdir", str(tmp_path)]) == 2
    assert "Invalid --logdir" in capsys.readouterr().err


def test_a_float32_runs_curves_take_12_bytes_a_minibatch_point_in_the_store(folders):
    conn = sqlite3.connect(folders["sweep"] / "sweep.sqlite")
    sizes = dict(conn.execute("SELECT name, length(curves) FROM runs"))
    for run in Store(folders["sweep"]).runs():
        evaluations = sum(p.split != "batch" for p in run["curves"])
        assert sizes[run["run"]] <= 12 * len(run["curves"]) + 4 * evaluations + 250


def as_old_store(folder):
    """Rewrite every stored run's curves as the previous version kept them: JSON rows,
    null for a non-finite value."""
    conn = sqlite3.connect(folder / "sweep.sqlite")
    with conn:
        for key, blob in conn.execute("SELECT key, curves FROM runs").fetchall():
            rows = [[p.step, p.train_seconds, p.split, p.metric,
                     p.value if math.isfinite(p.value) else None] for p in decode_curves(blob)]
            conn.execute("UPDATE runs SET curves = ? WHERE key = ?", (json.dumps(rows), key))
    conn.close()


def test_a_store_of_the_previous_version_is_read_and_reported(folders, tmp_path):
    import shutil

    old = shutil.copytree(folders["sweep"], tmp_path / "old")
    as_old_store(old)
    assert isinstance(sqlite3.connect(old / "sweep.sqlite").execute(
        "SELECT curves FROM runs").fetchone()[0], str)
    assert [r["curves"] for r in read_runs(old)] == [r["curves"] for r in
                                                      read_runs(folders["sweep"])]
    assert main(["report", str(old)]) == 0


def test_curves_of_an_unknown_format_are_refused_in_one_line(folders, tmp_path, capsys):
    import shutil

    bad = shutil.copytree(folders["sweep"], tmp_path / "bad")
    conn = sqlite3.connect(bad / "sweep.sqlite")
    with conn:
        name = conn.execute("SELECT name FROM runs LIMIT 1").fetchone()[0]
        conn.execute("UPDATE runs SET curves = ? WHERE name = ?", (b"OLC9\x00\x01", name))
    conn.close()
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"sweep.sqlite: run {name}: curves in an unknown format" in err


def test_the_contours_without_torch_are_the_functions_torch_evaluates():
    for name, fn in FUNCTIONS.items():
        xs, ys, z = surface(name, fn.bounds, False, 9)
        grid = torch.tensor(np.stack(np.meshgrid(xs, ys), -1), dtype=torch.float64)
        np.testing.assert_allclose(z, fn.f(grid).numpy(), rtol=1e-12, atol=1e-12)
