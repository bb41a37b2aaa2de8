"""`optimlab landscape`: optimizer paths on 2-D test functions (paths.json, PNG, HTML)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optimlab.commands._args import natural_int, number, positive_int
from optimlab.lab.entries import split_list
from optimlab.lab.experiment import output_folder, write_json
from optimlab.landscape import FUNCTIONS, LandscapeConfig, run_landscape
from optimlab.landscape.run import check_config
from optimlab.optim import OPTIMIZERS


def add_arguments(p: argparse.ArgumentParser) -> None:
    defaults = LandscapeConfig()
    p.add_argument("--function", default="all", metavar="NAME",
                   help=f"one of {', '.join(FUNCTIONS)}, or all (default all)")
    p.add_argument("--optimizers", default=",".join(defaults.optimizers), metavar="ENTRIES",
                   help=f"comma-separated entries [LABEL=]NAME[(key=value, ...)], NAME from "
                        f"{', '.join(OPTIMIZERS)} or module:Class of a torch.optim.Optimizer "
                        f"(default {','.join(defaults.optimizers)})")
    p.add_argument("--steps", type=positive_int, default=defaults.steps,
                   help=f"steps per run (default {defaults.steps})")
    p.add_argument("--lr", type=number, default=None,
                   help="one η for all optimizers (default: each picks its best η of the grid)")
    p.add_argument("--noise", type=number, default=0.0,
                   help="std of Gaussian noise added to each gradient component (default 0)")
    p.add_argument("--seed", type=natural_int, default=0,
                   help="seed of the gradient noise (default 0)")
    p.add_argument("--out", type=Path, help="output folder (default runs/landscape-<timestamp>)")


def run(args: argparse.Namespace) -> int:
    functions = tuple(FUNCTIONS) if args.function == "all" else (args.function,)
    try:
        cfg = LandscapeConfig(functions=functions, optimizers=tuple(split_list(args.optimizers)),
                              steps=args.steps, lr=args.lr, noise=args.noise, seed=args.seed)
        check_config(cfg)
        out = output_folder(args.out, "landscape")
    except ValueError as e:
        print(f"optimlab landscape: error: {e}", file=sys.stderr)
        return 2
    record = run_landscape(cfg)
    # the record is written before any picture, so a plotting failure loses no runs
    write_json(out / "paths.json", record)
    from optimlab.landscape.plot import animate_html, plot_landscape
    from optimlab.report.landscape import render
    from optimlab.report.landscape_claims import landscape_claims

    written = [out / "paths.json", plot_landscape(record, out / "landscape.png"),
               animate_html(record, out / "landscape.html"), render(out)]
    _summary(record)
    for c in landscape_claims(record):
        print(f"claim \"{c.lecture}\": {c.verdict or 'not checked by this run'}")
        print("".join(f"  {e}\n" for e in c.evidence), end="")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _summary(record: dict) -> None:
    width = max([9, *(len(o) for rec in record["functions"].values() for o in rec["runs"])])
    print(f"{'function':<11} {'optimizer':<{width}} {'lr':>7} {'steps to tol':>12} "
          f"{'final dist':>11}")
    for name, rec in record["functions"].items():
        for opt, r in rec["runs"].items():
            reached = "-" if r["steps_to_tol"] is None else str(r["steps_to_tol"])
            print(f"{name:<11} {opt:<{width}} {r['lr']:>7g} {reached:>12} "
                  f"{r['final_distance']:>11.3g}")
