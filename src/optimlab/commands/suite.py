"""`optimlab suite`: every optimizer on a set of workloads; performance profiles and the
lecture's claims about problem size (see `optimlab.lab.suite`).

Bad flags stop with exit code 2 and one line naming the flag, its value and what is allowed;
a workload that fails while it runs is reported as failed and the others go on.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optimlab._imports import is_import_path
from optimlab.commands._args import add_threads, capped, positive_int, torch_threads
from optimlab.commands.compare import _number, _optimizer_list
from optimlab.lab.experiment import DiskFull, out_path
from optimlab.lab.suite import BUILTIN, QUICK, TARGET_MEASURE, Suite, SuiteConfig
from optimlab.report.suite import flips_text, render


def _workloads(text: str) -> tuple[str, ...]:
    names = tuple(w.strip() for w in text.split(",") if w.strip())
    bad = [w for w in names if w not in BUILTIN and not is_import_path(w)]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{', '.join(bad) or repr(text)}; allowed: a comma-"
                                         f"separated list of {', '.join(BUILTIN)} or "
                                         "module:callable returning a Workload")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = SuiteConfig()
    p.add_argument("--workloads", type=_workloads, default=d.workloads, metavar="LIST",
                   help=f"built-in workloads or module:callable (default: all, "
                        f"{', '.join(BUILTIN)})")
    p.add_argument("--optimizers", type=_optimizer_list, default=d.optimizers,
                   metavar="ENTRIES", help="entries as compare takes them (default "
                                           f"{','.join(d.optimizers)})")
    p.add_argument("--seeds", type=positive_int, default=d.seeds,
                   help=f"seeds per optimizer and workload (default {d.seeds})")
    p.add_argument("--steps", type=positive_int, help="every workload's step budget instead "
                                                       "of its own (default: its own)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK:.0%}% of each workload's budget, at most 2 seeds: a smoke "
                        "test")  # argparse formats help with %: the sign doubled
    p.add_argument("--alpha", type=lambda t: _number(t, lambda v: 0 < v < 0.5,
                                                     "a number in (0, 0.5)"), default=d.alpha,
                   help=f"level of the paired tests (default {d.alpha:g})")
    p.add_argument("--tune-trials", type=positive_int, metavar="N",
                   help="tune each optimizer on each workload first, by N random-search "
                        "trials over its declared search space (equal budgets, selected on "
                        "validation); default: untuned, compare's η, which keeps the suite "
                        "within 10 minutes")
    p.add_argument("--out", help="output folder (default runs/suite-<timestamp>)")
    # One thread, as compare: the models are too small to gain from intra-op threads.
    add_threads(p, "1")


def _steps(s: float | None, budget: int) -> str:
    return "not reached" if s is None else f"{s:.0f} / {budget}"


def _print_table(console: Console, summary: dict[str, Any]) -> None:
    """Per workload (smallest first): each optimizer's median steps to target."""
    done = [w for w in summary["workloads"] if w["status"] == "finished"]
    names = list(dict.fromkeys(o for w in done for o in w["optimizers"]))
    table = Table(title="optimlab suite: median steps to the validation target (of budget)")
    for c in ("workload", "parameters", "target", *names):
        table.add_column(escape(c), justify="left" if c == "workload" else "right")
    for w in done:
        table.add_row(escape(w["name"]), f"{w['parameters']:,}", f"{w['target_acc']:.0%}",
                      *(_steps(w["optimizers"][o]["median_steps_to_target"], w["steps"])
                        if o in w["optimizers"] else "—" for o in names))
    console.print(table)
    for w in done:
        console.print(escape(_verdicts(w)))
        console.print(escape(f"{w['name']}: ranking over training: "
                             f"{flips_text(w['ranking_over_training'])}"))
    for w in summary["workloads"]:
        if w["status"] != "finished":
            console.print(f"{escape(w['name'])}: failed: {escape(w['error'])}")
    scores = ", ".join(f"{o} {s:.2f}" for o, s in summary["profiles"]["score"].items())
    console.print(f"profile score (mean share within τ ≤ {summary['profiles']['tau_max']:g}): "
                  f"{scores or '—'}")
    for c in summary["claims"]:
        console.print(f"claim \"{c['claim']}\": {c['verdict']} ({escape(c['why'])})")


def _verdicts(w: dict[str, Any]) -> str:
    """A workload's decided pairs on steps to target, or why none is decided."""
    rows = [c for c in w["comparisons"] if c["measure"] == TARGET_MEASURE]
    won = [f"{c['a']} < {c['b']}" if c["verdict"] == "a better" else f"{c['b']} < {c['a']}"
           for c in rows if c["verdict"] in ("a better", "b better")]
    if won:
        return f"{w['name']}: fewer steps to target (paired, Holm): {', '.join(won)}"
    if rows and all(c["verdict"] == "too few seeds" for c in rows):
        return f"{w['name']}: too few seeds for a verdict (needs {rows[0]['seeds_needed']})"
    return f"{w['name']}: no difference in steps to target detected"


def _run_line(r: dict[str, Any]) -> str:
    acc = r["final_test_acc"]
    return f"  {r['run']}: " + ("diverged" if r["diverged"] else
                                "test acc —" if acc is None else f"test acc {acc:.1%}")


def run(args: argparse.Namespace) -> int:
    with torch_threads(capped("suite", args.threads or 1)):
        console = Console() if sys.stdout.isatty() else Console(width=160)
        return _suite(args, console)


def _suite(args: argparse.Namespace, console: Console) -> int:
    out = out_path(args.out, "suite")
    try:
        cfg = SuiteConfig(workloads=args.workloads, optimizers=args.optimizers,
                          seeds=args.seeds, steps=args.steps, quick=args.quick,
                          alpha=args.alpha, tune_trials=args.tune_trials)
        suite = Suite(cfg, out)
    except (ValueError, TypeError, OSError) as e:
        print(f"optimlab suite: error: {e}", file=sys.stderr)
        return 2
    try:
        summary = suite.run(on_record=lambda r: console.print(escape(_run_line(r))),
                            on_workload=lambda w: console.print(f"workload {escape(w)}"))
    except DiskFull as e:
        print(f"optimlab suite: error: {e}", file=sys.stderr)
        return 1
    _print_table(console, summary)
    console.print(f"suite.json: {out / 'suite.json'}")
    console.print(f"report: {render(out)} (profiles.png beside it)")
    return 0
