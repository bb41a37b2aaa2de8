"""The fixed costs of a command: what a fresh `optimlab` process spends besides training.

Each case is a command line run as a fresh process `repeats` times; its CPU seconds (user +
system, from `RUSAGE_CHILDREN`, which the load of a shared machine does not inflate as it
does wall time) and wall seconds are reported as medians. A case's cost is its time minus
its `base` case's (`import torch` for what needs torch), so the table reads as "what this
adds". Run it as

    python -m optimlab.bench.fixed_costs [--repeats 3] [--json PATH]

Every case works in a temporary folder: the dataset cache and numba's cache are the
user's (what a user's second command sees) unless the case says "cold".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PY = sys.executable


def sweep_argv(steps: int) -> list[str]:
    """The goal's sweep (4 optimizers × 8 η, MNIST-1D MLP, batch 100), `steps` steps, one
    thread: with few steps, training is a small part and the rest is fixed cost."""
    return ["-m", "optimlab", "sweep", "--optimizers", "sgd,momentum,rmsprop,adam",
            "--lr", "1e-4:1e-1:8", "--steps", str(steps), "--batch-size", "100", "--model",
            "mlp", "--dataset", "mnist1d", "--threads", "1"]


SWEEP = sweep_argv(50)
COMPARE = ["-m", "optimlab", "compare", "--steps", "50", "--model", "mlp", "--threads", "1"]
# One Adam step on a tiny tensor: `foreach` pays torch.optim's machinery (its first
# add_param_group imports torch._dynamo), `fused` that and numba's import and kernel load.
STEP = ("import torch; from optimlab.optim import Adam; p = torch.zeros(10, "
        "requires_grad=True); p.grad = torch.ones(10); Adam([p], {}=True).step()")


# The sweep of one step: its cost is the command's fixed cost (training is ~10 ms of it)
FIXED = "optimlab sweep, 1 step"
# The goal: a sweep's fixed costs within 2 s of CPU, `import torch` the only large part
GOAL_S = 2.0


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[Path], list[str]]  # the command, given a fresh temporary folder
    base: str | None = None  # the case whose cost this one includes
    env: Callable[[Path], dict[str, str]] = field(default=lambda tmp: {})
    prepare: Callable[[Path], None] = field(default=lambda tmp: None)


def _sweep_out(tmp: Path) -> None:
    """A finished sweep in tmp/out, for the report case."""
    subprocess.run([PY, *SWEEP, "--out", str(tmp / "out")], check=True, capture_output=True)


CASES: tuple[Case, ...] = (
    Case("python", lambda tmp: [PY, "-c", "pass"]),
    Case("optimlab --help", lambda tmp: [PY, "-m", "optimlab", "--help"], "python"),
    Case("import torch", lambda tmp: [PY, "-c", "import torch"], "python"),
    Case("import torch._dynamo (torch.optim's first add_param_group/zero_grad/step)",
         lambda tmp: [PY, "-c", "import torch, torch._dynamo"], "import torch"),
    Case("optimlab sweep --help", lambda tmp: [PY, "-m", "optimlab", "sweep", "--help"],
         "import torch"),
    Case("MNIST-1D from its cache",
         lambda tmp: [PY, "-c", "from optimlab import data; data.load('mnist1d')"],
         "import torch"),
    Case("MNIST-1D generated (cold cache)",
         lambda tmp: [PY, "-c", "from optimlab import data; data.load('mnist1d')"],
         "import torch", env=lambda tmp: {"OPTIMLAB_CACHE": str(tmp / "cache")}),
    Case("first optimizer step, foreach", lambda tmp: [PY, "-c", STEP.format("foreach")],
         "import torch"),
    Case("first optimizer step, fused (numba's cache warm)",
         lambda tmp: [PY, "-c", STEP.format("fused")], "first optimizer step, foreach"),
    Case("first optimizer step, fused (cold: numba compiles)",
         lambda tmp: [PY, "-c", STEP.format("fused")], "first optimizer step, foreach",
         env=lambda tmp: {"NUMBA_CACHE_DIR": str(tmp / "numba")}),
    Case("optimlab sweep, 50 steps", lambda tmp: [PY, *SWEEP, "--out", str(tmp / "out")],
         "import torch"),
    Case(FIXED, lambda tmp: [PY, *sweep_argv(1), "--out", str(tmp / "out")], "import torch"),
    Case("optimlab report of that sweep",
         lambda tmp: [PY, "-m", "optimlab", "report", str(tmp / "out")], "import torch",
         prepare=_sweep_out),
    Case("optimlab compare, 50 steps", lambda tmp: [PY, *COMPARE, "--out", str(tmp / "out")],
         "import torch"),
)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(case: Case) -> tuple[float, float]:
    """(CPU s, wall s) of one fresh process of `case`, in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="optimlab-fixed-") as name:
        tmp = Path(name)
        case.prepare(tmp)
        cpu, wall = _children_cpu(), time.perf_counter()
        subprocess.run(case.argv(tmp), check=True, capture_output=True, cwd=tmp,
                       env={**os.environ, **case.env(tmp)})
        return _children_cpu() - cpu, time.perf_counter() - wall


def run(cases: tuple[Case, ...], repeats: int) -> list[dict[str, Any]]:
    """Medians over `repeats` rounds; the cases interleaved within a round."""
    times: dict[str, list[tuple[float, float]]] = {c.name: [] for c in cases}
    for _ in range(repeats):
        for case in cases:
            times[case.name].append(measure(case))
    rows: list[dict[str, Any]] = []
    cpus: dict[str, float] = {}
    for case in cases:
        cpu = cpus[case.name] = statistics.median(t[0] for t in times[case.name])
        wall = statistics.median(t[1] for t in times[case.name])
        base = cpus.get(case.base) if case.base else None
        rows.append({"case": case.name, "cpu_s": cpu, "wall_s": wall, "base": case.base,
                     "adds_cpu_s": cpu - base if base is not None else cpu})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | CPU s | wall s | adds CPU s (over) |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['cpu_s']:.2f} | {r['wall_s']:.2f} | {r['adds_cpu_s']:.2f}"
              f"{' (' + r['base'] + ')' if r['base'] else ''} |" for r in rows]
    return "\n".join(lines)


def goal_line(rows: list[dict[str, Any]]) -> str | None:
    """The sweep's fixed costs against GOAL_S (None when that case did not run)."""
    by = {r["case"]: r for r in rows}
    if FIXED not in by:
        return None
    cost, torch_s = by[FIXED]["cpu_s"], by["import torch"]["cpu_s"]
    met = "met" if cost <= GOAL_S else "not met"
    return (f"fixed costs of sweep: {cost:.2f} s CPU (import torch {torch_s:.2f}, the rest "
            f"{cost - torch_s:.2f}); goal <= {GOAL_S:g} s: {met}")


def selected(only: str) -> tuple[Case, ...]:
    """The cases whose name contains `only`, with their bases (so that "adds" has something
    to subtract)."""
    wanted = {c.name for c in CASES if only in c.name}
    while True:
        more = wanted | {c.base for c in CASES if c.name in wanted and c.base}
        if more == wanted:
            return tuple(c for c in CASES if c.name in wanted)
        wanted = more


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m optimlab.bench.fixed_costs",
                                description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", help="run the cases whose name contains this (and their bases)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    cases = selected(args.only) if args.only else CASES
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.repeats} rounds",
          flush=True)
    rows = run(cases, args.repeats)
    print(format_table(rows))
    goal = goal_line(rows)
    if goal:
        print(goal)
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
