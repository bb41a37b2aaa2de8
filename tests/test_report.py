"""The reports' records: damaged folders are refused with a clear reason; no global
matplotlib backend; the static fallback without plotly; the landscape report."""

from __future__ import annotations

import html
import json
import subprocess
import sys

import numpy as np
import pytest
from summaries import runs as summary_runs
from summaries import summary

from optimlab import lab
from optimlab.cli import main
from optimlab.report import records as report_records


def tiny_dataset():
    import torch

    from optimlab.data import Dataset

    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 2, n)
        x = rng.normal(0, 1, (n, 4)) + (2 * y[:, None] - 1)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)

    return Dataset("tiny", *split(64), *split(32), *split(32), (4,), 2)


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    """A small comparison written by the lab (two optimizers, two seeds)."""
    ds = tiny_dataset()
    out = tmp_path_factory.mktemp("report") / "cmp"
    cfg = lab.CompareConfig(model="logreg", optimizers=("sgd", "adam"), steps=12, eval_every=4,
                            seeds=2, batch_size=8, lr={"sgd": 0.1, "adam": 0.05})
    lab.run_compare(cfg, out, dataset=ds)
    return out


def copy_of(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_a_truncated_summary_json_names_the_file_and_the_defect(compare_dir, tmp_path, capsys):
    out = copy_of(compare_dir, tmp_path / "cut")
    text = (out / "summary.json").read_text()
    (out / "summary.json").write_text(text[:len(text) // 2])
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optimlab report: error: ") and "Traceback" not in err
    assert f"{out / 'summary.json'} is damaged: not valid JSON at line" in err
    assert "cut short" in err


@pytest.mark.parametrize("damage, message", [
    (lambda t: t[:-9], "is cut off mid-row"),  # the last line loses its end
    (lambda t: t.replace("\r\n", "\r\nsgd-seed0,3\r\n", 1), "line 2 has 2 fields, expected 6"),
    (lambda t: t.replace("batch,loss,", "batch,loss,x", 1), "line 8 has a non-number"),
    (lambda t: "", "header None"),
])
def test_a_damaged_curves_csv_is_detected_not_parsed(compare_dir, tmp_path, capsys, damage,
                                                     message):
    out = copy_of(compare_dir, tmp_path / "cut")
    (out / "curves.csv").write_bytes(damage((out / "curves.csv").read_bytes().decode()).encode())
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'curves.csv'} is damaged: " in err and message in err


def test_a_row_cut_exactly_after_a_field_is_still_caught(compare_dir, tmp_path):
    """The silent case: "...,0.6931" cut to "...,0.69" parses as a number; the missing
    line break at the end of the file gives it away."""
    out = copy_of(compare_dir, tmp_path / "cut")
    raw = (out / "curves.csv").read_bytes()
    (out / "curves.csv").write_bytes(raw[:-4])
    last = raw[:-4].rsplit(b"\n", 1)[-1]
    assert len(last.split(b",")) == 6  # a whole row to the csv module
    with pytest.raises(report_records.DamagedRecords, match="cut off mid-row"):
        report_records.read_curves(out / "curves.csv")


def test_an_intact_folder_renders(compare_dir, tmp_path, capsys):
    out = copy_of(compare_dir, tmp_path / "ok")
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "What the lecture says, and what this run shows" in page
    assert page.count('<div id="train-loss" class="chart">') == 1


def test_the_page_shows_the_comparisons_and_an_older_folder_gets_them_computed(
        compare_dir, tmp_path):
    """A folder written before comparisons were stored renders the same comparisons, made
    from its records; its 2 seeds give "too few seeds", in the table and in the claims."""
    from optimlab.analysis.comparisons import read_comparisons
    from optimlab.analysis.records import read_summary_file
    from optimlab.report.table import comparison_rows

    stored = summary(compare_dir)["comparisons"]
    old = copy_of(compare_dir, tmp_path / "old")
    records = summary_runs(old)
    # as an earlier version wrote it: a bare list of run records, no comparisons
    (old / "summary.json").write_text(json.dumps(records))
    assert read_comparisons(old, read_summary_file(old / "summary.json")) == stored
    assert main(["report", str(old)]) == 0
    page = html.unescape((old / "report.html").read_text())
    assert "Paired comparisons (paired sign-flip permutation test, α = 0.05" in page
    assert all(cell in page for row in comparison_rows(stored) for cell in row)
    assert "too few seeds: 2 paired seeds cannot reach α = 0.05" in page


def test_importing_the_package_leaves_the_matplotlib_backend_alone():
    """Jupyter's inline backend must survive `import optimlab.report` and the figures."""
    code = ("import matplotlib; matplotlib.use('svg'); import sys\n"
            "import optimlab.report, optimlab.report.sweep, optimlab.report.diagnostics\n"
            "import optimlab.landscape.plot, optimlab.report.landscape\n"
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_plotly_the_report_is_static_with_a_note(compare_dir, tmp_path, monkeypatch):
    from optimlab.report import interactive

    monkeypatch.setattr(interactive, "available", lambda: False)
    out = copy_of(compare_dir, tmp_path / "static")
    page = (main(["report", str(out)]), (out / "report.html").read_text())[1]
    assert html.escape(interactive.NO_PLOTLY) in page and "<script" not in page
    assert page.count("<img alt=") == 1


def test_landscape_folder_report_slides_over_every_path_of_the_grid(tmp_path):
    from optimlab.landscape import LandscapeConfig, run_landscape
    from optimlab.report import landscape

    record = run_landscape(LandscapeConfig(functions=("ravine",), optimizers=("sgd", "adam"),
                                           steps=20, lr_grid=(0.01, 0.1, 1.0)))
    (tmp_path / "paths.json").write_text(json.dumps(record))
    assert main(["report", str(tmp_path)]) == 0
    data = landscape.page_data(record)["landscape"]
    sgd = data["functions"][0]["runs"][0]
    assert data["lr_grid"] == [0.01, 0.1, 1.0] and sgd["lrs"] == [0.01, 0.1, 1.0]
    chosen = record["functions"]["ravine"]["runs"]["sgd"]
    assert sgd["chosen"] == [0.01, 0.1, 1.0].index(chosen["lr"])
    for path, grid in zip(sgd["paths"], chosen["grid"]):
        assert np.allclose(np.c_[path[0], path[1]], grid["path"], rtol=1e-3, atol=1e-6)
    (tmp_path / "paths.json").write_text('{"kind": "optimlab.landscape", "functions": ')
    assert main(["report", str(tmp_path)]) == 2


def test_the_report_says_what_tuning_chose_and_where_it_could_not(compare_dir, tmp_path):
    out = copy_of(compare_dir, tmp_path / "tuned")
    meta = json.loads((out / "config.json").read_text())
    meta["tuning"] = {
        "sgd": {"lr": 0.2, "source": "default", "grid": [1e-4, 1e-2, 1.0], "all_diverged": True,
                "edge": {}},
        "adam": {"lr": 1e-4, "source": "tuned", "grid": [1e-4, 1e-2, 1.0],
                 "all_diverged": False, "edge": {"lr": "low"}}}
    (out / "config.json").write_text(json.dumps(meta))
    page = (main(["report", str(out)]), (out / "report.html").read_text())[1]
    assert "Tuning (compare --tune)" in page
    assert "every trial diverged: the η given or the default is used" in page
    assert "η on the low edge: the best value may lie beyond" in page
    assert "this run did not tune η" not in page  # adam was tuned: the claim is judged


def test_a_swept_learning_rate_is_judged_against_the_best_points_seed_spread(tmp_path):
    """With --select val the grid runs one seed per η; the best η's re-runs under more
    seeds give the spread that the accuracy across η is held against."""
    from optimlab.lab.grid import SweepConfig
    from optimlab.lab.sweep import Sweep
    from optimlab.report.sweep import _points, best_per_optimizer, load_sweep, lr_lines

    ds = tiny_dataset()
    cfg = SweepConfig(model="logreg", optimizers=("sgd",), steps=10, eval_every=5,
                      batch_size=8, seeds=3, select="val", grid={"lr": (1e-4, 1e-2, 1.0)})
    Sweep(cfg, tmp_path, dataset=ds).run()
    runs = load_sweep(tmp_path)[0]
    best = best_per_optimizer([r for r in runs if "grid" in r["roles"]])
    lines = lr_lines(_points(runs), best)["sgd"]
    best_lr = best["sgd"]["config"]["hyperparameters"]["lr"]
    assert {lr: len(v) for lr, v in lines.items()} == {
        lr: 3 if lr == best_lr else 1 for lr in (1e-4, 1e-2, 1.0)}
    tuned = sorted(r["summary"]["final_val_acc"] for r in runs if "tuned" in r["roles"])
    assert sorted(lines[best_lr]) == tuned
    page = (tmp_path / "report.html").read_text() if main(["report", str(tmp_path)]) == 0 \
        else ""
    assert "The learning rate is still crucial" in page and "seed spread at most" in page


def test_the_sweeps_table_names_the_best_values_on_a_grid_edge(tmp_path):
    """The same edges as the sweep's own selection, βs included (they are one `betas`)."""
    from optimlab.lab.grid import SweepConfig, point_value
    from optimlab.lab.sweep import Sweep
    from optimlab.report.sweep import (
        BEST_COLUMNS,
        best_edges,
        best_per_optimizer,
        best_rows,
        load_sweep,
    )

    cfg = SweepConfig(model="logreg", optimizers=("adam",), steps=6, eval_every=3,
                      batch_size=8, select="val", grid={"lr": (1e-3, 1e-2, 1e-1),
                                                        "beta1": (0.5, 0.7, 0.9),
                                                        "beta2": (0.99, 0.999)})
    sweep = Sweep(cfg, tmp_path, dataset=tiny_dataset())
    sweep.run()
    chosen = sweep.selection()["adam"]
    runs, meta = load_sweep(tmp_path)
    best = best_per_optimizer([r for r in runs if "grid" in r["roles"]])
    hp = chosen["hyperparameters"]
    expected = ", ".join(f"{k}={point_value(hp, k):g} ({side})"
                         for k, side in sorted(chosen["edge"].items())) or "no"
    assert "beta2" in chosen["edge"]  # two values: the best β₂ is always on an edge
    # from the stored selection, and from the grid runs alone (a store without one)
    for stored in (meta, {}):
        rows, _ = best_rows(runs, best, best_edges(runs, best, stored))
        assert rows[0][BEST_COLUMNS.index("on the grid edge")] == expected


def test_without_plotly_sweep_and_landscape_reports_are_static_with_a_note(tmp_path,
                                                                          monkeypatch):
    from optimlab.lab.grid import SweepConfig
    from optimlab.lab.sweep import Sweep
    from optimlab.landscape import LandscapeConfig, run_landscape
    from optimlab.report import interactive

    monkeypatch.setattr(interactive, "available", lambda: False)
    sweep_dir, land_dir = tmp_path / "sweep", tmp_path / "land"
    Sweep(SweepConfig(model="logreg", optimizers=("sgd",), steps=4, eval_every=2, batch_size=8,
                      grid={"lr": (1e-2, 1e-1)}), sweep_dir, dataset=tiny_dataset()).run()
    land_dir.mkdir()
    (land_dir / "paths.json").write_text(json.dumps(run_landscape(LandscapeConfig(
        functions=("ravine",), optimizers=("sgd",), steps=5, lr=0.1))))
    for out, images in ((sweep_dir, 3), (land_dir, 0)):
        assert main(["report", str(out)]) == 0
        page = (out / "report.html").read_text()
        assert html.escape(interactive.NO_PLOTLY) in page and "<script" not in page
        # η-sensitivity, best curves and budget curves; the landscape has no PNG yet
        assert page.count("<img alt=") == images
