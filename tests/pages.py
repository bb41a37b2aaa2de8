"""A report page as a test reads it: its data and figures, which the page carries packed
(gzip in base64, see optimlab.report.interactive.packed), unpacked in place."""

from __future__ import annotations

import base64
import gzip
import re

PACKED = re.compile(r'(id="optimlab-data">|data-figure=")([A-Za-z0-9+/=]+)')


def unpacked(page: str) -> str:
    """The page's text with its data and figures as JSON text, for searching (plotly.js
    stays packed; the figures' JSON breaks their attributes' quoting)."""
    return PACKED.sub(lambda m: m.group(1) + gzip.decompress(base64.b64decode(m.group(2)))
                      .decode("utf-8"), page)
