"""Report pages in headless Chromium: the reports' goal (a page ≤ 1.5 MB, a 1,000-run
sweep's page drawn within 1 s; `optimlab sweep-bench --report`), and the browser the
report tests drive (tests/browser.py).

Debian's `chromium` and `chromium-driver`, driven by selenium (the dev extra). The
browser's console and its network events (Chrome's performance log) are recorded, so a
caller can check that a page raised no JavaScript error and requested nothing outside
the file.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from optimlab.bench.report import goal

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
GOAL_MB = 1.5
GOAL_OPEN_MS = 1000.0
# The goal's page: 1,000 runs (Adam, 25 η × 5 β₁ × 4 β₂ × 2 seeds, 20 steps on MNIST-1D's
# logistic regression), as `optimlab sweep` writes it (docs/reports.md, "Measured").
SWEEP_1000 = {"model": "logreg", "optimizers": "adam", "lr": "1e-4:1:25",
              "beta1": "0.5,0.7,0.8,0.9,0.95", "beta2": "0.9,0.95,0.99,0.999", "seeds": 2,
              "steps": 20, "eval_every": 10}


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def open_chromium(width: int = 1300, height: int = 1000) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--enable-unsafe-swiftshader", f"--window-size={width},{height}",
                "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


# Loaded, and drawn where the page carries plotly.js (it unpacks it first, then marks body).
DRAWN = ("return document.readyState === 'complete' && (!document.getElementById("
         "'optimlab-plotly') || document.body.dataset.drawn === '1')")


def load(driver: Any, page: Path) -> None:
    """Open a file and wait until its charts are drawn."""
    driver.get_log("browser")  # drop what an earlier page left
    driver.get_log("performance")
    driver.get(page.resolve().as_uri())
    deadline = time.monotonic() + 30
    while not driver.execute_script(DRAWN):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{page} did not finish drawing in 30 s")
        time.sleep(0.02)


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# From navigation to the charts drawn: the page script's mark, or the load event for a
# page whose scripts draw before it (pages written before the mark existed).
OPEN_MS = ("const m = performance.getEntriesByName('optimlab-drawn')[0], "
           "n = performance.getEntriesByType('navigation')[0]; "
           "return m ? m.startTime : n.loadEventEnd")


def open_ms(pages: list[Path], rounds: int) -> dict[Path, list[float]]:
    """Each page opened once per round, in turn (a first round warms the file cache and is
    not kept): milliseconds until its charts are drawn."""
    driver = open_chromium()
    times: dict[Path, list[float]] = {p: [] for p in pages}
    try:
        for r in range(rounds + 1):
            for page in pages:
                load(driver, page)
                if console_errors(driver):
                    raise RuntimeError(f"{page}: {console_errors(driver)}")
                if r:
                    times[page].append(driver.execute_script(OPEN_MS))
    finally:
        driver.quit()
    return times


def report_bench(rounds: int, dataset: Any = None, flags: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The goal's sweep (`flags`, as `optimlab sweep`'s: SWEEP_1000; `dataset`: the one they
    name, when already loaded) trained and drawn in a temporary folder: its page's bytes,
    and its opening times in `rounds` rounds where the browser runs."""
    from optimlab.lab.grid import settings
    from optimlab.lab.sweep import Sweep
    from optimlab.report.sweep import render

    cfg = settings({}, flags or SWEEP_1000)
    with tempfile.TemporaryDirectory(prefix="optimlab-pages-") as tmp:
        t0 = time.perf_counter()
        sweep = Sweep(cfg, Path(tmp), dataset=dataset)
        sweep.run()
        page = render(tmp, sweep.finished)
        sweep_s = time.perf_counter() - t0
        size, why = page.stat().st_size, missing()
        ms = None if why else open_ms([page], rounds)[page]
    opened = None if ms is None else statistics.median(ms)
    return {"runs": len(sweep.finished), "sweep_s": sweep_s, "bytes": size,
            "open_ms": opened, "open_samples_ms": ms, "browser": why or "chromium",
            "goals": [goal(f"a sweep page of {len(sweep.finished):,} runs ≤ {GOAL_MB:g} MB",
                           size / 1e6, GOAL_MB, at_most=True),
                      goal(f"that page drawn in Chromium ≤ {GOAL_OPEN_MS:g} ms",
                           opened, GOAL_OPEN_MS, at_most=True)]}


def format_report_bench(r: dict[str, Any]) -> str:
    from optimlab.bench.report import format_goals

    opened = ("not opened: " + r["browser"]) if r["open_ms"] is None else (
        f"drawn in {r['open_ms']:.0f} ms in Chromium (median of "
        f"{len(r['open_samples_ms'])} rounds: "
        + ", ".join(f"{m:.0f}" for m in r["open_samples_ms"]) + ")")
    return "\n".join([f"sweep of {r['runs']:,} runs in {r['sweep_s']:.1f} s; its page "
                      f"{r['bytes']:,} bytes, {opened}",
                      *format_goals(r["goals"], "measured in this run")])
