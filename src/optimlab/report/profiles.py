"""profiles.png from a suite's suite.json: performance profiles, drawn as step functions.

One line per optimizer: the share of workloads it brings to the target within tau times
the best optimizer's steps (`optimlab.analysis.profiles`), on a log tau axis up to the
largest finite ratio (or the profiles' tau_max, whichever is larger), with a dashed line
at tau_max, the right end of the score. Plotting never trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

# Ticks a reader can name (log axes otherwise label 2 as 2×10⁰).
TICKS = (1, 1.5, 2, 3, 4, 6, 8, 16, 32, 64, 128)


def profiles_figure(summary: dict[str, Any]) -> Figure:
    """The profiles of `summary` (suite.json's content) as a matplotlib Figure."""
    prof = summary["profiles"]
    taus, n = prof["tau"], len(prof["ratios"])
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    right = max(taus) * 1.15 if taus else 2.0
    for name, fractions in prof["fraction"].items():
        # where="post": rho jumps at a ratio and holds until the next one
        ax.step([*taus, right], [*fractions, fractions[-1]], where="post", lw=1.6,
                label=f"{name} (score {prof['score'][name]:.2f})")
    ax.axvline(prof["tau_max"], color="0.5", ls="--", lw=0.8)  # the score's right end
    ax.set_xscale("log")
    ax.set_xlim(1.0, right)
    ax.set_xticks([t for t in TICKS if t <= right])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("τ: steps to target ÷ the best optimizer's (log)")
    ax.set_ylabel(f"share of the {n} workloads reached within τ")
    ax.set_title("performance profiles (median over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def write(summary: dict[str, Any], path: str | Path) -> Path:
    """Draw `summary`'s profiles into the PNG at `path`; the path."""
    path = Path(path)
    profiles_figure(summary).savefig(path, dpi=110)
    return path
