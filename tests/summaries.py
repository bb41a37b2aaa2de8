"""summary.json as the tests read it: the object its writers leave, {"runs": [...], ...}."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def summary(folder: Path) -> dict[str, Any]:
    """The whole summary.json of `folder`, checked to be the object with its runs."""
    found = json.loads((folder / "summary.json").read_text())
    assert isinstance(found, dict) and isinstance(found["runs"], list), found
    return found


def runs(folder: Path) -> list[dict[str, Any]]:
    """The run records of `folder`'s summary.json."""
    return summary(folder)["runs"]
