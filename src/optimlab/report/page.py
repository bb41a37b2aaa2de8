"""report.html: one self-contained file (figures inlined as data: URIs, scripts embedded,
no network), and the claims panel."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optimlab.report.claims import Claim
from optimlab.report.table import group_runs

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, td:nth-child(2) { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
pre.command { white-space: pre-wrap; overflow-wrap: break-word; }
img { max-width: 100%; }
.claims td, .claims th { text-align: left; } .claims td:first-child { max-width: 22em; }
.verdict { font-weight: bold; white-space: nowrap; }
.holds { color: #1a7f37; } .fails { color: #b42318; } .undecided { color: #9a6700; }
.unchecked { color: #777; }
.note { color: #555; font-style: italic; }
"""


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


AUDIT_TITLE = "Fairness audit (equal budgets, edges, schedules, seeds)"


def audit_section(found: dict[str, Any] | None) -> list[tuple[str, str]]:
    """summary.json's "audit" as a page section: one row per finding, then the pairs whose
    verdicts it made undecided; nothing for a folder written before audits were stored."""
    if not found:
        return []
    rows = [[f["kind"], ", ".join(f["entries"]), f["text"]] for f in found["findings"]]
    rows += [["undecided", f"{u['a']} vs {u['b']}", "; ".join(u["reasons"])]
             for u in found["undecided"]]
    return [(AUDIT_TITLE, html_table(("check", "entries", "finding"), rows))]


def inline_png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pre(obj: Any, css: str = "") -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, indent=1)
    attribute = f' class="{css}"' if css else ""
    return f"<pre{attribute}>{html.escape(text)}</pre>"


def command_html(command: str) -> str:
    """The command line, wrapped at the page's width rather than cut off at its edge."""
    return _pre(command, "command")


def write_page(path: Path, *, title: str, sections: Sequence[tuple[str, str]],
               note: str = "", style: str = "", scripts: str = "") -> Path:
    """Write an HTML page of (heading, already-escaped HTML body) sections; `note`: one
    line under the title; `scripts`: embedded at the end of the body."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    note_html = f'<p class="note">{html.escape(note)}</p>\n' if note else ""
    path.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}{style}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{note_html}{body}{scripts}</body></html>\n",
        encoding="utf-8")
    return path


CLAIMS_TITLE = "What the lecture says, and what this run shows"
# the compare claims' verdicts, then the suite's size claims' (analysis.size_claims)
_VERDICT_CLASS = {"holds": "holds", "does not hold": "fails", "undecided": "undecided",
                  "contradicted": "fails", "not supported": "undecided",
                  "too few seeds": "undecided"}


SEED_RULE = ("<p>A measure favours one side when the paired sign-flip test, over the seeds both "
             "ran, rejects at α (Holm-corrected across the measures of the claim); with too "
             "few seeds for any p to reach α it decides nothing. Speed is counted in steps, "
             "not seconds. A claim holds when one measure favours it and none the other side."
             "</p>")


def claims_html(claims: Sequence[Claim], rule: str = SEED_RULE) -> str:
    """The claims panel: the claim, its verdict (or "not checked"), the numbers behind it;
    `rule`: how the verdicts are decided, as HTML."""
    rows = []
    for c in claims:
        css = _VERDICT_CLASS.get(c.verdict or "", "unchecked")
        verdict = c.verdict or "not checked by this run"
        evidence = "<br>".join(html.escape(e) for e in c.evidence)
        rows.append(f"<tr><td>{html.escape(c.lecture)}</td><td class=\"verdict {css}\">"
                    f"{html.escape(verdict)}</td><td>{evidence}</td></tr>")
    return (rule + '<table class="claims"><thead><tr><th>the lecture says</th>'
            "<th>this run</th><th>the numbers</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def settings_used(settings: dict[str, Any], records: Sequence[dict[str, Any]]
                  ) -> dict[str, Any]:
    """The settings as the runs used them: where config.json keeps a default unresolved
    ("steps": null beside "epochs", "lr": {} for the default η), the runs' records say
    which value it became."""
    out = dict(settings)
    if out.get("steps") is None and records:
        steps = sorted({int(r.get("steps_planned") or r["steps"]) for r in records})
        out["steps"] = steps[0] if len(steps) == 1 else steps
    if isinstance(out.get("lr"), dict):
        used = {name: runs[0]["hyperparameters"]["lr"]
                for (name, _), runs in group_runs(list(records)).items()
                if isinstance(runs[0]["hyperparameters"].get("lr"), (int, float))}
        out["lr"] = used | out["lr"]
    return out


def config_sections(meta: dict[str, Any], records: Sequence[dict[str, Any]] = ()
                    ) -> list[tuple[str, str]]:
    """The exact command, the configuration (with the values `records` used where the
    settings hold a default) and the environment, from config.json."""
    env = meta.get("environment", {})
    settings = settings_used(meta.get("settings", {}), records)
    return [("Command", command_html(meta.get("command", ""))),
            ("Configuration", _pre({"settings": settings, "dataset": meta.get("dataset", "")})),
            ("Environment", html_table(("key", "value"), sorted(env.items())))]
