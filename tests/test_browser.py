"""Every kind of report, opened in headless Chromium: no JavaScript error, the charts drawn
with the expected traces, the controls change what is drawn, nothing requested beyond the
file. In CI (CI set) a missing browser fails these tests instead of skipping them."""

from __future__ import annotations

import json
import os
import re
import time
import warnings

import browser
import matplotlib.colors
import numpy as np
import pytest
import torch

from optimlab import lab
from optimlab.data import Dataset
from optimlab.lab.grid import SweepConfig
from optimlab.lab.store import Store
from optimlab.lab.sweep import Sweep
from optimlab.landscape import LandscapeConfig, run_landscape
from optimlab.report import landscape as landscape_report
from optimlab.report import render as render_compare
from optimlab.report.plots import smooth
from optimlab.report.records import read_curves
from optimlab.report.sweep import render as render_sweep

pytestmark = pytest.mark.slow
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")


@pytest.fixture(scope="module")
def driver():
    why = browser.missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {why}")
        pytest.skip(why)
    d = browser.open_chromium()
    yield d
    d.quit()


def tiny() -> Dataset:
    rng = np.random.default_rng(1)

    def split(n):
        y = rng.integers(0, 3, n)
        x = rng.normal(0, 1, (n, 6)) + 1.5 * np.eye(3, 6)[y]
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)

    return Dataset("tiny", *split(120), *split(40), *split(40), (6,), 3)


@pytest.fixture(scope="module")
def compare_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "compare"
    cfg = lab.CompareConfig(model="logreg", optimizers=OPTIMIZERS, steps=40, eval_every=10,
                            seeds=2, batch_size=10, target_acc=0.6)
    lab.run_compare(cfg, out, dataset=tiny())
    return render_compare(out)


@pytest.fixture(scope="module")
def sweep_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "sweep"
    cfg = SweepConfig(model="logreg", optimizers=("sgd", "adam"), steps=20, eval_every=10,
                      batch_size=10, seeds=2, select="val",
                      grid={"lr": (1e-3, 1e-2, 1e-1), "beta1": (0.5, 0.9),
                            "beta2": (0.99, 0.999)})
    Sweep(cfg, out, dataset=tiny()).run()
    return render_sweep(out)


@pytest.fixture(scope="module")
def halving_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "halving"
    cfg = SweepConfig(model="logreg", optimizers=("sgd", "adam"), steps=40, eval_every=10,
                      batch_size=10, halving=3, min_steps=10,
                      grid={"lr": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)})
    Sweep(cfg, out, dataset=tiny()).run()
    return render_sweep(out)


@pytest.fixture(scope="module")
def landscape_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "landscape"
    out.mkdir()
    record = run_landscape(LandscapeConfig(functions=("ravine", "saddle"),
                                           optimizers=("sgd", "adam"), steps=30,
                                           lr_grid=(0.01, 0.1, 0.3)))
    (out / "paths.json").write_text(json.dumps(record))
    return landscape_report.render(out), record


@pytest.fixture(scope="module")
def suite_page(tmp_path_factory):
    import optimlab
    from optimlab.lab.suite import Workload

    out = tmp_path_factory.mktemp("browser") / "suite"
    w = Workload("tiny", "logreg", tiny(), target_acc=0.6, steps=20, batch_size=10,
                 eval_every=5)
    summary = optimlab.suite([w], ["sgd", "adam"], seeds=2, out=out)  # writes report.html
    return out / "report.html", summary


def opened(driver, page) -> None:
    """Open the page; it must raise no JavaScript error and request nothing but itself."""
    browser.load(driver, page)
    assert browser.console_errors(driver) == []
    urls = browser.requested_urls(driver)
    assert urls and all(u.startswith(("file:", "data:", "blob:")) for u in urls), urls
    names = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(n.startswith(("file:", "data:", "blob:")) for n in names), names


def traces(driver, div) -> list[dict]:
    """What plotly holds for a chart: per trace its type, name, visibility and points."""
    return driver.execute_script(
        "return document.getElementById(arguments[0]).data.map(t => ({type: t.type || "
        "'scatter', name: t.name, visible: t.visible === undefined ? true : t.visible, "
        "x: t.x ? Array.from(t.x) : null, y: t.y ? Array.from(t.y) : null}))", div)


def drawn(driver, div) -> int:
    """Traces drawn on screen (a hidden one leaves the scatter layer)."""
    return driver.execute_script(
        "return document.querySelectorAll('#' + arguments[0] + ' .scatterlayer .trace')"
        ".length", div)


def set_range(driver, element_id, value) -> None:
    driver.execute_script("const e = document.getElementById(arguments[0]); e.value = "
                          "arguments[1]; e.dispatchEvent(new Event('input'));",
                          element_id, str(value))


def click_legend(driver, div, index) -> None:
    """Click a legend entry; plotly applies a single click after its double-click delay."""
    driver.find_elements("css selector", f"#{div} .legend .legendtoggle")[index].click()
    time.sleep(0.5)


def test_the_console_and_network_checks_can_fail(driver, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><img src='http://192.0.2.1/x.png'>"
                    "<script>undefinedFunction()</script>")
    browser.load(driver, page)
    assert any("undefinedFunction" in e for e in browser.console_errors(driver))
    assert "http://192.0.2.1/x.png" in browser.requested_urls(driver)


def test_a_page_whose_chart_library_cannot_be_unpacked_says_so(driver, compare_page,
                                                              tmp_path):
    page = tmp_path / "broken.html"  # as a browser without gzip in DecompressionStream
    page.write_text(re.sub(r'(id="optimlab-plotly">)[A-Za-z0-9+/=]+', r"\1AAAA",
                           compare_page.read_text()))
    driver.get(page.as_uri())
    deadline = time.monotonic() + 10
    while not driver.find_elements("css selector", "body > p.note"):
        assert time.monotonic() < deadline, "no note after 10 s"
        time.sleep(0.05)
    note = driver.find_element("css selector", "body > p.note").text
    assert note.startswith("The interactive charts could not be drawn in this browser (")
    assert driver.execute_script("return typeof Plotly") == "undefined"
    assert drawn(driver, "train-loss") == 0


def expected_smoothed_mean(out, run_names, window):
    """The reference: optimlab.report.plots.smooth per seed, then the mean over seeds, on
    the numbers the page holds (5 significant digits)."""
    curves = read_curves(out / "curves.csv")
    seeds = [np.array([float(f"{v:.5g}") for v in curves[r][("batch", "loss")]["value"]])
             for r in run_names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack([smooth(s, window) for s in seeds]), 0)


def test_compare_report_draws_toggles_and_smooths(driver, compare_page):
    opened(driver, compare_page)
    for div in ("train-loss", "test-loss", "test-acc"):
        assert len(traces(driver, div)) == 3 * len(OPTIMIZERS)  # band (2) + mean per group
        assert drawn(driver, div) == 3 * len(OPTIMIZERS)
    # the legend hides a group (its mean and its band) and shows it again
    click_legend(driver, "train-loss", 0)
    hidden = [t for t in traces(driver, "train-loss") if t["visible"] == "legendonly"]
    assert len(hidden) == 3 and drawn(driver, "train-loss") == 3 * len(OPTIMIZERS) - 3
    click_legend(driver, "train-loss", 0)
    assert drawn(driver, "train-loss") == 3 * len(OPTIMIZERS)
    # the smoothing slider redraws the mean: the page's moving average is the Python one
    for window in (1, 7):
        set_range(driver, "smooth", window)
        adam = next(t for t in traces(driver, "train-loss") if t["name"].startswith("adam"))
        ref = expected_smoothed_mean(compare_page.parent, ["adam-seed0", "adam-seed1"], window)
        np.testing.assert_allclose(adam["y"], ref, rtol=1e-9)
    before = traces(driver, "test-acc")
    set_range(driver, "smooth", 3)  # evaluation curves are not smoothed
    assert traces(driver, "test-acc") == before


def test_compare_report_axes_switch_and_table_sorts(driver, compare_page):
    opened(driver, compare_page)
    layout = "return document.getElementById('train-loss').layout.yaxis.type"
    assert driver.execute_script(layout) == "log"
    driver.find_element("css selector", "input[name=yscale][value=linear]").click()
    assert driver.execute_script(layout) == "linear"
    steps = traces(driver, "train-loss")[-1]["x"]
    driver.find_element("css selector", "input[name=xaxis][value=sec]").click()
    secs = traces(driver, "train-loss")[-1]["x"]
    assert steps == list(range(1, 41)) and secs != steps and secs == sorted(secs)
    column = 2  # final test acc
    driver.find_elements("css selector", "table.sortable th")[column].click()
    cells = driver.execute_script(
        "return Array.from(document.querySelectorAll('table.sortable tbody tr')).map("
        "r => r.cells[arguments[0]].textContent)", column)
    values = [float(c.split()[0]) for c in cells]
    assert values == sorted(values)
    assert "What the lecture says, and what this run shows" in driver.page_source


def test_sweep_report_draws_sensitivity_heatmap_parallel_coordinates_and_curves(driver, sweep_page):
    opened(driver, sweep_page)
    loss = traces(driver, "lr-loss")
    # sgd: one line; adam: one line per (β₁, β₂); plus a best-η star per optimizer
    assert len(loss) == 1 + 4 + 2
    assert sum(t["visible"] is True for t in loss) == 1 + 1 + 2  # the best lines and stars
    assert [t["type"] for t in traces(driver, "betas")] == ["heatmap"]
    # polylines by accuracy bin, the run points, and the selected run's line (none yet)
    par = traces(driver, "parcoords-adam")
    assert {t["type"] for t in par} == {"scatter"} and par[-2]["name"] == "runs"
    assert par[-1]["name"] == "selected run" and par[-1]["x"] == []
    par = par[:-1]
    axes = driver.execute_script(
        "return document.getElementById('parcoords-adam').layout.xaxis.ticktext")
    assert axes == ["betas[0]", "betas[1]", "log10 lr", "val acc (%)"]
    # a polyline per run: the grid under seed 0, and the best point again under seed 1
    assert sum(t["x"].count(None) for t in par[:-1]) == len(par[-1]["y"]) == 3 * 2 * 2 + 1
    assert driver.find_elements("css selector", "#parcoords-sgd") == []  # one varying value
    budget = traces(driver, "budget")  # per optimizer its band, then its line
    assert [t["name"] for t in budget[1::2]] == ["sgd", "adam"]
    assert all(len(band["x"]) == 2 * len(line["x"]) > 0  # a band goes out and back
               for band, line in zip(budget[::2], budget[1::2]))
    hidden = next(i for i, t in enumerate(loss) if t["visible"] == "legendonly")
    click_legend(driver, "lr-loss", hidden)
    assert traces(driver, "lr-loss")[hidden]["visible"] is True
    assert len(traces(driver, "best-train-loss")) == 2 * 3
    before = traces(driver, "best-train-loss")[2]["y"]
    set_range(driver, "smooth", 5)
    assert traces(driver, "best-train-loss")[2]["y"] != before


def click_at(driver, div, x, y) -> None:
    """A real mouse click where the chart draws the data point (x, y)."""
    from selenium.webdriver.common.action_chains import ActionChains

    dx, dy = driver.execute_script(
        "const gd = document.getElementById(arguments[0]), b = gd.getBoundingClientRect(), "
        "xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis; "
        "return [xa._offset + xa.l2p(arguments[1]) - b.width / 2, "
        "ya._offset + ya.l2p(arguments[2]) - b.height / 2]", div, x, y)
    element = driver.find_element("id", div)
    ActionChains(driver).move_to_element_with_offset(element, 1, 1).pause(0.2) \
        .move_to_element_with_offset(element, round(dx), round(dy)).pause(0.3).click() \
        .perform()
    time.sleep(0.5)


def selected(driver, div) -> tuple[str, list, list, str]:
    """The run a chart says is selected: its name, its highlighted line, the title."""
    return driver.execute_script(
        "const gd = document.getElementById(arguments[0]), t = gd.data[gd.data.length - 1]; "
        "return [gd.dataset.selected, Array.from(t.x), Array.from(t.y), gd.layout.title.text]",
        div)


def test_sweep_report_links_parallel_coordinates_to_the_runs_curves(driver, sweep_page):
    opened(driver, sweep_page)
    store = {r["run"]: r for r in Store(sweep_page.parent).runs()}
    par = traces(driver, "parcoords-adam")
    runs = par[-2]  # the run points on the accuracy axis
    click_at(driver, "parcoords-adam", runs["x"][0], runs["y"][0])
    name, x, y, title = selected(driver, "runcurves-adam")
    assert name in store and name.startswith("adam") and title.endswith(f"selected: {name}")
    # its curve as the store holds it, in %, and its polyline through every axis
    curve = [(p.step, 100 * p.value) for p in store[name]["curves"]
             if p.split == "val" and p.metric == "acc"]
    assert x == [s for s, _ in curve] and y == pytest.approx([v for _, v in curve], abs=1e-3)
    same, px, py, _ = selected(driver, "parcoords-adam")
    axes = len(driver.execute_script(
        "return document.getElementById('parcoords-adam').layout.xaxis.ticktext"))
    assert same == name and px == list(range(axes)) and py[-1] == pytest.approx(runs["y"][0])
    # a click on another run's curve, at its last point, selects that run in both figures
    other = next(r for r in store.values() if r["run"].startswith("adam") and r["run"] != name
                 and r["summary"]["final_val_acc"] != store[name]["summary"]["final_val_acc"])
    last = [p for p in other["curves"] if p.split == "val" and p.metric == "acc"][-1]
    click_at(driver, "runcurves-adam", last.step, 100 * last.value)
    chosen = selected(driver, "parcoords-adam")[0]
    assert chosen != name and chosen == selected(driver, "runcurves-adam")[0]
    assert store[chosen]["summary"]["final_val_acc"] == pytest.approx(
        other["summary"]["final_val_acc"])


def test_a_halving_sweeps_page_draws_a_rung_chart_per_optimizer(driver, halving_page):
    opened(driver, halving_page)
    for div in ("rungs-0", "rungs-1"):
        lines = traces(driver, div)
        assert len(lines) == 6  # one per configuration
        # 6 -> 2 at step 10 -> 1 at step 30 (ceil(n/3)): one line reaches step 40 in colour
        ends = sorted(max(t["x"]) for t in lines)
        assert ends == [10, 10, 10, 10, 30, 40]
        legend = driver.execute_script(
            f"return document.getElementById('{div}').data.map(t => t.showlegend)")
        assert legend == [max(t["x"]) == 40 for t in lines]
        shapes = driver.execute_script(
            f"return document.getElementById('{div}').layout.shapes.map(s => s.x0)")
        assert shapes == [10, 30]


def test_landscape_report_slides_over_eta_and_steps(driver, landscape_page):
    page, record = landscape_page
    opened(driver, page)
    for name, fn in record["functions"].items():
        kinds = [t["type"] for t in traces(driver, f"land-{name}")]
        assert kinds == ["contour", "scatter", "scatter"] + (["scatter"] if fn["minimum"]
                                                             else [])
    sgd = record["functions"]["ravine"]["runs"]["sgd"]
    shown = traces(driver, "land-ravine")[1]
    assert len(shown["x"]) == len(sgd["path"])  # the chosen η, every step
    np.testing.assert_allclose(shown["x"], [p[0] for p in sgd["path"]], rtol=1e-3, atol=1e-6)
    set_range(driver, "land-lr", 2)  # the grid's second η
    set_range(driver, "land-step", 5)
    shown = traces(driver, "land-ravine")[1]
    path = sgd["grid"][1]["path"]
    assert shown["name"].startswith("sgd η=0.1") and len(shown["x"]) == 6
    np.testing.assert_allclose(shown["y"], [p[1] for p in path[:6]], rtol=1e-3, atol=1e-6)
    step = "return +document.getElementById('land-step').value"
    driver.find_element("css selector", "#land-play").click()
    deadline = time.monotonic() + 20
    while driver.execute_script(step) <= 5:  # playing moves the step on
        assert time.monotonic() < deadline, "play did not advance the steps"
        time.sleep(0.05)
    driver.execute_script("document.getElementById('land-play').click()")  # pause
    paused = driver.execute_script(step)
    time.sleep(0.3)
    assert driver.execute_script(step) == paused
    assert len(traces(driver, "land-ravine")[1]["x"]) == paused + 1
    click_legend(driver, "land-ravine", 0)
    assert traces(driver, "land-ravine")[1]["visible"] == "legendonly"


def test_no_chart_title_lies_under_the_charts_toolbar(driver, sweep_page, landscape_page):
    """plotly's toolbar sits in a chart's top right corner; every title stays clear of it."""
    overlaps = """return Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => {
        const t = gd.querySelector('.gtitle').getBoundingClientRect();
        const b = gd.querySelector('.modebar').getBoundingClientRect();
        return [gd.id, t.width > 0 && b.width > 0 && t.right > b.left && t.left < b.right
                && t.bottom > b.top && t.top < b.bottom];
    })"""
    for page in (sweep_page, landscape_page[0]):
        opened(driver, page)
        charts = driver.execute_script(overlaps)
        assert len(charts) >= 2 and not [div for div, over in charts if over], charts


def test_landscape_html_plays_steps_and_hides_an_optimizer(driver, landscape_page, tmp_path):
    """landscape.html (the light page, without plotly): a step slider, play/pause and a
    switch per optimizer change what its canvas draws."""
    from optimlab.landscape.plot import COLORS, animate_html

    page = animate_html(landscape_page[1], tmp_path / "landscape.html")
    opened(driver, page)
    sgd = tuple(int(255 * c) for c in matplotlib.colors.to_rgb(COLORS["sgd"]))
    inked = """const c = document.getElementById('cv'), d = c.getContext('2d')
        .getImageData(0, 0, c.width, c.height).data, rgb = arguments[0]; let n = 0;
        for (let i = 0; i < d.length; i += 4) n += d[i + 3] > 200 && Math.abs(d[i] - rgb[0])
            + Math.abs(d[i + 1] - rgb[1]) + Math.abs(d[i + 2] - rgb[2]) < 30;
        return n;"""
    driver.execute_script("document.getElementById('play').click()")  # pause the autoplay
    set_range(driver, "step", 0)
    assert driver.execute_script(inked, sgd) == 0  # no step taken: nothing drawn
    set_range(driver, "step", 30)
    assert driver.execute_script(inked, sgd) > 50
    assert driver.find_element("css selector", "#play").text == "play"
    driver.find_element("css selector", "#toggles input[data-name=sgd]").click()
    assert driver.execute_script(inked, sgd) == 0
    driver.find_element("css selector", "#toggles input[data-name=sgd]").click()
    set_range(driver, "step", 0)
    driver.find_element("css selector", "#play").click()
    deadline = time.monotonic() + 20
    while driver.execute_script("return +document.getElementById('step').value") < 30:
        assert time.monotonic() < deadline, "play did not reach the last step"
        time.sleep(0.05)
    assert driver.find_element("css selector", "#play").text == "play"  # stops at the end


def test_suite_report_draws_the_profiles_and_each_workloads_ranking(driver, suite_page):
    page, summary = suite_page
    opened(driver, page)
    profiles = traces(driver, "profiles")
    assert [t["name"].split()[0] for t in profiles] == ["sgd", "adam"]
    assert [t["y"][:-1] for t in profiles] == list(summary["profiles"]["fraction"].values())
    checkpoints = summary["workloads"][0]["ranking_over_training"]["checkpoints"]
    ranking = traces(driver, "ranking-tiny")
    assert {t["name"]: t["y"] for t in ranking} == {
        o: [c["rank"][o] for c in checkpoints] for o in ("sgd", "adam")}
    assert drawn(driver, "ranking-tiny") == 2
    reversed_axis = "return document.getElementById('ranking-tiny')._fullLayout.yaxis.range"
    low, high = driver.execute_script(reversed_axis)
    assert low > high  # rank 1 at the top


def test_sweep_bench_report_prints_the_pages_bytes_and_its_opening_time(driver, npz, tmp_path,
                                                                         monkeypatch, capsys):
    """`optimlab sweep-bench --report`: the goal's sweep (here a small one) trained and drawn,
    its page's size and Chromium's time to draw it, against the reports' goals."""
    from conftest import exit_code

    from optimlab.bench import pages

    monkeypatch.setattr(pages, "SWEEP_1000", pages.SWEEP_1000 | {
        "lr": "1e-3:1e-1:3", "beta1": "0.5,0.9", "beta2": "0.99", "seeds": 1, "steps": 4,
        "eval_every": 2, "batch_size": 20})
    path = tmp_path / "report.json"
    assert exit_code(["sweep-bench", "--report", "--repeats", "2", "--dataset", f"npz:{npz}",
                      "--batch-size", "20", "--json", str(path)]) == 0
    r = json.loads(path.read_text())
    assert r["runs"] == 3 * 2 and r["browser"] == "chromium"
    assert len(r["open_samples_ms"]) == 2 and 0 < min(r["open_samples_ms"]) <= r["open_ms"]
    size, opened = r["goals"]
    assert size["value"] == r["bytes"] / 1e6 and size["met"] is True  # a small page
    assert opened["value"] == r["open_ms"] and opened["target"] == 1000
    printed = capsys.readouterr().out
    assert "sweep of 6 runs in " in printed and f"its page {r['bytes']:,} bytes" in printed
