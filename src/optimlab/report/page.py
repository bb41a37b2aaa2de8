"""report.html: one self-contained file (figures inlined as data: URIs, no network, no scripts)."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, td:nth-child(2) { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; }
"""


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def inline_png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pre(obj: Any) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, indent=1)
    return f"<pre>{html.escape(text)}</pre>"


def write_page(path: Path, *, title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """Write an HTML page of (heading, already-escaped HTML body) sections."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    path.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}</body></html>\n", encoding="utf-8")
    return path


def config_sections(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The exact command, the configuration and the environment, from config.json."""
    env = meta.get("environment", {})
    return [("Command", _pre(meta.get("command", ""))),
            ("Configuration", _pre({"settings": meta.get("settings", {}),
                                    "dataset": meta.get("dataset", "")})),
            ("Environment", html_table(("key", "value"), sorted(env.items())))]
