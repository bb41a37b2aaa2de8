"""Headless Chromium for the report tests and the documentation's screenshots.

Debian's `chromium` and `chromium-driver`, driven by selenium. The browser's console and
its network events (Chrome's performance log) are recorded, so a test can assert that a
page raised no JavaScript error and requested nothing outside the file.

Screenshots for docs/img (a 256-colour PNG, as the landscape figures):
    python tests/browser.py REPORT.html OUT.png [WIDTH HEIGHT]
Opening times (docs/performance.md), medians of ROUNDS rounds over the pages in turn:
    python tests/browser.py --open-ms ROUNDS REPORT.html [REPORT.html ...]
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


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


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for since it was opened (Network.requestWillBeSent)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def screenshot(page: Path, out: Path, width: int = 1300, height: int = 1400) -> Path:
    from PIL import Image

    driver = open_chromium(width, height)
    try:
        load(driver, page)
        time.sleep(0.5)  # let plotly's transitions settle
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    small = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(small, "png", optimize=True)
    out.write_bytes(small.getvalue())
    return out


# From navigation to the charts drawn: the page script's mark, or the load event for a
# page whose scripts draw before it (pages written before the mark existed).
OPEN_MS = ("const m = performance.getEntriesByName('optimlab-drawn')[0], "
           "n = performance.getEntriesByType('navigation')[0]; "
           "return m ? m.startTime : n.loadEventEnd")


def open_ms(pages: list[Path], rounds: int) -> dict[Path, list[float]]:
    """Each page opened once per round, in turn (a first round warms the file cache and is
    not kept): milliseconds until its charts are drawn."""
    driver, times = open_chromium(), {p: [] for p in pages}
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


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--open-ms"] and len(args) > 2:
        for page, ms in open_ms([Path(a) for a in args[2:]], int(args[1])).items():
            print(f"{page}: median {sorted(ms)[len(ms) // 2]:.0f} ms, "
                  f"{page.stat().st_size:,} bytes ({', '.join(f'{m:.0f}' for m in ms)})")
        sys.exit()
    if len(args) not in (2, 4):
        sys.exit(__doc__)
    size = (int(args[2]), int(args[3])) if len(args) == 4 else ()
    print(screenshot(Path(args[0]), Path(args[1]), *size), os.path.getsize(args[1]), "bytes")
