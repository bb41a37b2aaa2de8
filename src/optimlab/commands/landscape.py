"""`optimlab landscape`: optimizer paths on 2-D test functions (paths.json, PNG, HTML)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optimlab.landscape import FUNCTIONS, LandscapeConfig, run_landscape
from optimlab.optim import OPTIMIZERS


def add_arguments(p: argparse.ArgumentParser) -> None:
    defaults = LandscapeConfig()
    p.add_argument("--function", default="all", metavar="NAME",
                   help=f"one of {', '.join(FUNCTIONS)}, or all (default all)")
    p.add_argument("--optimizers", nargs="+", default=list(defaults.optimizers), metavar="NAME",
                   help=f"from {', '.join(OPTIMIZERS)} (default: sgd momentum rmsprop adam)")
    p.add_argument("--steps", type=int, default=defaults.steps,
                   help=f"steps per run (default {defaults.steps})")
    p.add_argument("--lr", type=float, default=None,
                   help="one η for all optimizers (default: each picks its best η of the grid)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="std of Gaussian noise added to each gradient component (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the gradient noise (default 0)")
    p.add_argument("--out", type=Path, default=Path("landscape-out"),
                   help="output folder (default landscape-out)")


def run(args: argparse.Namespace) -> int:
    functions = tuple(FUNCTIONS) if args.function == "all" else (args.function,)
    cfg = LandscapeConfig(functions=functions, optimizers=tuple(args.optimizers),
                          steps=args.steps, lr=args.lr, noise=args.noise, seed=args.seed)
    try:
        record = run_landscape(cfg)
    except ValueError as e:
        print(f"optimlab landscape: {e}", file=sys.stderr)
        return 2
    # the record is written before any picture, so a plotting failure loses no runs
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paths.json").write_text(json.dumps(record, indent=1))
    from optimlab.landscape.plot import animate_html, plot_landscape

    written = [args.out / "paths.json", plot_landscape(record, args.out / "landscape.png"),
               animate_html(record, args.out / "landscape.html")]
    _summary(record)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _summary(record: dict) -> None:
    print(f"{'function':<11} {'optimizer':<9} {'lr':>7} {'steps to tol':>12} {'final dist':>11}")
    for name, rec in record["functions"].items():
        for opt, r in rec["runs"].items():
            reached = "-" if r["steps_to_tol"] is None else str(r["steps_to_tol"])
            print(f"{name:<11} {opt:<9} {r['lr']:>7g} {reached:>12} {r['final_distance']:>11.3g}")
