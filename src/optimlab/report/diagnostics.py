"""Figures of the step-size recorder (`optimlab.lab.diagnostics`), from diagnostics.json.

`render(records, out_dir)` takes the list the lab stores in diagnostics.json
(one entry per run: "run", "optimizer", "seed", "hyperparameters",
"diagnostics": {callback name: result}) and writes
- diagnostics_effective_step.png: per layer (its weight tensor), the median effective
  step size η/(√ŝ+ε) over training with its quantile band, one panel per adaptive run;
- diagnostics_update_ratio.png: ‖Δw‖/‖w‖ of the whole model per run, coloured by optimizer.
Runs without step-size records are skipped; no records, no figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

KIND = "optimlab.step_sizes"


def step_size_runs(records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(run, optimizer, recorder result) for every run that has step-size records."""
    out = []
    for entry in records:
        for result in (entry.get("diagnostics") or {}).values():
            if isinstance(result, dict) and result.get("kind") == KIND and result["steps"]:
                out.append((str(entry.get("run", "?")), str(entry.get("optimizer", "?")),
                            result))
    return out


def plot_effective_step(runs: list[tuple[str, str, dict[str, Any]]], path: Path) -> Path | None:
    adaptive = [r for r in runs if r[2]["effective_step"]]
    if not adaptive:
        return None
    cols = min(2, len(adaptive))
    rows = math.ceil(len(adaptive) / cols)
    fig = Figure(figsize=(5.5 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(adaptive):]:
        ax.axis("off")
    for ax, (run, _, res) in zip(axes.flat, adaptive):
        lo, mid, hi = (f"q{q:g}" for q in (min(res["quantiles"]), _middle(res["quantiles"]),
                                            max(res["quantiles"])))
        for layer, qs in _weights_first(res["effective_step"]).items():
            (line,) = ax.plot(res["steps"], qs[mid], lw=1.2, label=layer)
            ax.fill_between(res["steps"], qs[lo], qs[hi], color=line.get_color(), alpha=0.15)
        ax.set_yscale("log")
        ax.set_title(f"{run}: η/(√ŝ+ε), {mid} line, {lo}–{hi} band", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


def _weights_first(per_tensor: dict[str, Any]) -> dict[str, Any]:
    """The weight matrices only, when there are any: bias bands would hide them."""
    weights = {k: v for k, v in per_tensor.items() if k.endswith("weight")}
    return weights or per_tensor


def _middle(quantiles: list[float]) -> float:
    return min(quantiles, key=lambda q: abs(q - 0.5))


def plot_update_ratio(runs: list[tuple[str, str, dict[str, Any]]], path: Path) -> Path:
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    colors: dict[str, Any] = {}
    for run, opt, res in runs:
        pts = [(s, r) for s, r in zip(res["steps"], res["update_ratio_total"]) if r]
        color = colors.setdefault(opt, f"C{len(colors)}")
        ax.plot([s for s, _ in pts], [r for _, r in pts], color=color, lw=1.2, label=run)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("‖Δw‖ / ‖w‖ (whole model)")
    ax.set_title("update-to-weight ratio per optimizer", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


def render(records: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """The PNGs of the step-size records in `records`, written into `out_dir`."""
    runs = step_size_runs(records)
    if not runs:
        return []
    out = Path(out_dir)
    paths = [plot_effective_step(runs, out / "diagnostics_effective_step.png"),
             plot_update_ratio(runs, out / "diagnostics_update_ratio.png")]
    return [p for p in paths if p is not None]
