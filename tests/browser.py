"""Headless Chromium for the report tests and the documentation's screenshots: the
browser of `optimlab.bench.pages` (Debian's `chromium` and `chromium-driver`, driven by
selenium; its console and network events recorded), and what only the tests need.

Screenshots for docs/img (a 256-colour PNG, as the landscape figures):
    python tests/browser.py REPORT.html OUT.png [WIDTH HEIGHT]
Opening times (docs/performance.md), medians of ROUNDS rounds over the pages in turn:
    python tests/browser.py --open-ms ROUNDS REPORT.html [REPORT.html ...]
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# The browser itself, shared with `optimlab sweep-bench --report`
from optimlab.bench.pages import (  # noqa: F401
    console_errors,
    load,
    missing,
    open_chromium,
    open_ms,
)


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
