"""The interactive pages stay light: plotly's cartesian bundle and the data compressed, at
most 1.5 MB a page, for the demo-sized pages and for a sweep of 1,000 runs; the parallel
coordinates (drawn with scatter lines, as that bundle has no parcoords) put each run at its
values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_browser import tiny

from optimlab import lab
from optimlab.lab.grid import SweepConfig
from optimlab.lab.sweep import Sweep
from optimlab.report import render as render_compare
from optimlab.report.interactive import MAX_POINTS, bucketed
from optimlab.report.sweep import render as render_sweep
from optimlab.report.sweep_interactive import VIRIDIS, parallel_coordinates

PAGE_LIMIT = 1_500_000  # bytes


def _points(rows):
    return [{"optimizer": "adam", "lr": lr, "hp": {"lr": lr, "betas": (b1, b2)},
             "acc": acc, "run": f"run{i}", "curve": [(10, acc / 2), (20, acc)]}
            for i, (lr, b1, b2, acc) in enumerate(rows)]


def test_parallel_coordinates_put_each_run_at_its_values_once():
    rows = [(1e-3, 0.5, 0.99, 0.40), (1e-2, 0.9, 0.999, 0.90), (1e-1, 0.9, 0.99, 0.65),
            (1e-1, 0.5, 0.999, math.nan)]  # the diverged run is left out
    [(name, fig, curves)] = parallel_coordinates(_points(rows))
    assert name == "adam" and "1 diverged, not shown" in fig["layout"]["title"]["text"]
    assert fig["layout"]["xaxis"]["ticktext"] == ["betas[0]", "betas[1]", "log10 lr",
                                                  "val acc (%)"]
    # written out by hand: each axis scaled by its range over the three finished runs
    # (β₁: 0.5, 0.9; β₂: 0.99, 0.999; log10 η: -3, -2, -1; acc 40, 90, 65)
    expected = [(0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 0.5, 1.0), (1.0, 0.0, 1.0, 0.5)]
    lines, runs = fig["data"][:-2], fig["data"][-2]
    drawn = []
    for trace in lines:
        ys = trace["y"]
        for start in range(0, len(ys), 5):  # 4 axes, then the gap
            assert trace["x"][start:start + 5] == [0, 1, 2, 3, None]
            run = trace["customdata"][start]  # every vertex names its run, for a click
            assert trace["customdata"][start:start + 5] == [run] * 4 + [None]
            assert ys[start:start + 4] == list(expected[run])
            drawn.append((tuple(ys[start:start + 4]), trace["line"]["color"]))
    assert sorted(y for y, _ in drawn) == sorted(expected)
    assert fig["layout"]["meta"] == {"link": "runcurves-adam", "names": ["run0", "run1", "run2"]}
    assert fig["data"][-1]["x"] == [] == curves["data"][-1]["x"]  # nothing selected yet
    # the linked curves: run i's validation accuracy in %, in its line's colour
    assert curves["layout"]["meta"] == {"link": "parcoords-adam",
                                        "names": ["run0", "run1", "run2"]}
    for trace in curves["data"][:-1]:
        for start in range(0, len(trace["y"]), 3):
            run = trace["customdata"][start]
            acc = 100 * rows[run][3]
            assert trace["x"][start:start + 3] == [10, 20, None]
            assert trace["y"][start:start + 2] == pytest.approx([acc / 2, acc])
            assert trace["line"]["color"] == colours_of(fig)[run]
    colours = dict(drawn)  # the worst run in the first colour, the best in the last
    assert colours[expected[0]] == VIRIDIS[0] and colours[expected[1]] == VIRIDIS[-1]
    assert runs["marker"]["color"] == [40.0, 90.0, 65.0] and runs["y"] == [0.0, 1.0, 0.5]
    assert "log10 lr = -2" in runs["text"][1] and "val acc (%) = 90" in runs["text"][1]


def colours_of(fig):
    """run index -> the colour of its parallel-coordinates line."""
    return {c: t["line"]["color"] for t in fig["data"][:-2] for c in t["customdata"]
            if c is not None}


@pytest.mark.slow
@pytest.mark.parametrize("steps", [1500, 20000], ids=["demo-sized", "long-bucketed"])
def test_a_compare_page_stays_under_the_limit(tmp_path, steps):
    # the demo's shape: four optimizers, two seeds, a minibatch loss per step; at 20,000
    # steps the loss curves go to the page as bucket means (1.74 MB without them)
    cfg = lab.CompareConfig(model="logreg", optimizers=("sgd", "momentum", "rmsprop", "adam"),
                            steps=steps, eval_every=100, seeds=2, batch_size=10)
    lab.run_compare(cfg, tmp_path, dataset=tiny())
    assert render_compare(tmp_path).stat().st_size <= PAGE_LIMIT


@pytest.mark.slow
def test_a_sweep_page_of_a_thousand_runs_stays_under_the_limit(tmp_path):
    lrs = tuple(10.0 ** (k / 6 - 4) for k in range(25))
    cfg = SweepConfig(model="logreg", optimizers=("adam",), steps=4, eval_every=2,
                      batch_size=10, seeds=2, grid={"lr": lrs, "beta1": (0.5, 0.7, 0.8, 0.9, 0.95),
                                                    "beta2": (0.9, 0.99, 0.999, 0.9999)})
    Sweep(cfg, tmp_path, dataset=tiny()).run()
    page = render_sweep(tmp_path)
    assert page.read_text().count("<tr><td>adam-") == 1000  # a row per run
    assert page.stat().st_size <= PAGE_LIMIT


def test_a_long_curve_is_sent_as_means_of_whole_buckets():
    # 4,500 points: 3 a bucket (the fewest that fit in MAX_POINTS = 2,000), the last
    # bucket short, and a seed that stopped after 4,000 points (gaps after it)
    steps, secs = np.arange(1, 4501.0), np.arange(1, 4501.0) / 10
    rows = np.stack([np.arange(4500.0), np.where(np.arange(4500) < 4000, 1.0, np.nan)])
    b_steps, b_secs, b_rows, per = bucketed(steps, secs, rows)
    assert per == 3 and b_rows.shape == (2, 1500)
    i = np.arange(1500)
    np.testing.assert_array_equal(b_steps, 3 * i + 3)
    np.testing.assert_allclose(b_secs, (3 * i + 3) / 10)
    np.testing.assert_allclose(b_rows[0], 3 * i + 1)  # mean of 3i, 3i+1, 3i+2
    # bucket 1333 holds points 3999..4001: one value, two gaps
    assert np.all(b_rows[1, :1334] == 1.0) and np.isnan(b_rows[1, 1334:]).all()
    short = np.arange(float(MAX_POINTS))
    assert bucketed(short, short, short[None])[3] == 1  # up to MAX_POINTS: as recorded

