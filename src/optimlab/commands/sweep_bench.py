"""`optimlab sweep-bench`: `optimlab sweep` against the loop a student writes, and our
executors, side by side in one run (JSON); see `optimlab.bench.sweep`.

`--halving`: successive halving against the same random configurations trained in full
(`optimlab.bench.halving`).

The default is the lab's reference sweep: 4 optimizers × 8 learning rates, the MLP on
MNIST-1D, 2000 steps, batch 100, one seed, torch's default threads. `--race N` races
searches of N trials to the full random sweep's best validation score instead (see
`optimlab.bench.search`): Adam over its declared search space unless given otherwise.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from optimlab.bench.halving import format_halving, run_halving_bench
from optimlab.bench.search import ROWS as RACE_ROWS
from optimlab.bench.search import RaceConfig, format_race, run_race
from optimlab.bench.sweep import (
    DEFAULT_ROWS,
    ROWS,
    SweepBenchConfig,
    format_step_times,
    format_summary,
    run_sweep_bench,
    step_times,
)
from optimlab.commands._args import capped, eta, natural_int, positive_int, torch_threads
from optimlab.lab.experiment import load_dataset
from optimlab.lab.grid import TPE_BATCH, settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimizers", help="comma-separated (default sgd,momentum,rmsprop,adam; "
                                        "--race, --halving: adam)")
    p.add_argument("--lr", help="η grid (default 1e-4:1e-1:8; --race, --halving: a range LO:HI, "
                                "default the optimizer's declared search space)")
    p.add_argument("--steps", type=positive_int, default=2000, help="steps per run (default 2000)")
    p.add_argument("--batch-size", type=positive_int, default=100, help="(default 100)")
    p.add_argument("--eval-every", type=positive_int, default=None,
                   help="steps between evaluations of the command and executor rows "
                        "(default: optimlab sweep's)")
    p.add_argument("--model", default="mlp", help="(default mlp)")
    p.add_argument("--dataset", default="mnist1d", help="(default mnist1d)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="float64: runs agree to ~1e-9, so the agreement shows equal results")
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                   help=f"comma-separated from {', '.join(ROWS)} (default: all; ray when "
                        "installed)")
    p.add_argument("--max-batch", type=positive_int, default=None,
                   help="members trained together; the Ray row's shard size (default: "
                        "optimlab sweep's)")
    p.add_argument("--threads", type=natural_int, default=0,
                   help="torch CPU threads for every row, at most the cores this process may "
                        "use (more are capped with a note) (default 0: torch's, one per core)")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="rounds of all rows, order rotated; medians reported (default 1)")
    p.add_argument("--step-times", type=natural_int, default=0, metavar="ROUNDS",
                   help="instead of the rows: CPU time of one training step — the loop's, the "
                        "vectorized group's through its written-out backward and through vmap, "
                        "its optimizer part fused and through the torch ops, the matrix "
                        "products alone — medians of ROUNDS interleaved rounds")
    p.add_argument("--store", type=natural_int, default=0, metavar="RUNS",
                   help="instead of the rows: the driver's store, finished runs of --steps "
                        "steps written per second, one commit per run and in the sweep's "
                        "batches, medians of --repeats interleaved rounds of RUNS runs")
    p.add_argument("--fixed-costs", action="store_true",
                   help="instead of the rows: the goal's sweep of one step in fresh processes "
                        "against `import torch`, CPU seconds, medians of --repeats rounds "
                        "(python -m optimlab.bench.fixed_costs runs every case)")
    p.add_argument("--report", action="store_true",
                   help="instead of the rows: a sweep of 1,000 runs (Adam's η × β₁ × β₂ × 2 "
                        "seeds on the logistic regression), its page's bytes and the time "
                        "headless Chromium takes to draw it (medians of --repeats rounds; "
                        "needs chromium, chromium-driver and selenium)")
    p.add_argument("--halving", type=eta, nargs="?", const=3, metavar="ETA",
                   help="instead of the rows: --trials random configurations swept with "
                        "successive halving (ETA alone: 3) and in full; member-steps, wall "
                        "clock and the pick's test accuracy against the full sweep's best")
    p.add_argument("--min-steps", type=positive_int, metavar="R",
                   help="with --halving: the first rung (default --eval-every)")
    p.add_argument("--trials", type=positive_int, default=81,
                   help="with --halving: random configurations per optimizer, from its "
                        "declared search space (default 81)")
    p.add_argument("--race", type=natural_int, default=0, metavar="TRIALS",
                   help="instead of the rows: the time each search of TRIALS configurations "
                        "takes to reach the best validation score of the full random sweep "
                        "(rows full, random, tpe per --batches K, and Optuna's TPE with its "
                        "SuccessiveHalvingPruner trial by trial)")
    p.add_argument("--race-rows", default=",".join(RACE_ROWS),
                   help=f"with --race: comma-separated from {', '.join(RACE_ROWS)} (default: "
                        "all; full sets the target)")
    p.add_argument("--batches", default=str(TPE_BATCH),
                   help=f"with --race: the tpe rows' K, comma-separated (default {TPE_BATCH})")
    p.add_argument("--search-seed", type=natural_int, default=0,
                   help="with --race: the seed of every search (default 0)")
    p.add_argument("--sweep-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="with --race: a setting of the random and tpe rows' sweeps (a "
                        "`optimlab sweep` setting, e.g. halving=3); repeatable")
    p.add_argument("--json", type=Path, help="also write the result to this file")


def sweep_settings(texts: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` settings, each value a Python literal or else a string."""
    out = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Invalid --sweep-setting {text!r}; allowed: KEY=VALUE")
        try:
            out[key.strip().replace("-", "_")] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip().replace("-", "_")] = value
    return out


def race_config(args: argparse.Namespace, given: dict[str, Any]) -> RaceConfig:
    """The search race's settings from the flags (ValueError/TypeError when bad)."""
    try:
        batches = tuple(positive_int(k.strip()) for k in args.batches.split(","))
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"Invalid --batches {args.batches!r}: {e}") from None
    sweep = settings({}, {**given, "optimizers": args.optimizers or "adam", "search": "random",
                          "trials": args.race, "search_seed": args.search_seed})
    cfg = RaceConfig(sweep, rows=tuple(r.strip() for r in args.race_rows.split(",")),
                     batches=batches, extra=sweep_settings(args.sweep_setting))
    cfg.validate()
    return cfg


def _race(args: argparse.Namespace, given: dict[str, Any]) -> int:
    try:
        cfg = race_config(args, given)
        dataset = load_dataset(cfg.sweep)
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"optimlab sweep-bench: error: {e}", file=sys.stderr)
        return 2
    import torch  # loaded already by the bench

    with torch_threads(capped("sweep-bench", args.threads) if args.threads
                       else torch.get_num_threads()):
        result = run_race(cfg, dataset,
                          progress=lambda what: print(f"... {what}", file=sys.stderr))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(format_race(result))
    return 0


def run(args: argparse.Namespace) -> int:
    given = {"optimizers": args.optimizers, "lr": args.lr, "steps": args.steps,
             "batch_size": args.batch_size, "model": args.model, "dataset": args.dataset,
             "dtype": args.dtype, "eval_every": args.eval_every, "max_batch": args.max_batch}
    if args.halving is not None or args.min_steps is not None:
        return _halving(args, given | {"optimizers": args.optimizers or "adam",
                                       "search": "random", "trials": args.trials,
                                       "halving": args.halving, "min_steps": args.min_steps})
    if args.race:
        return _race(args, given)
    given |= {"optimizers": args.optimizers or "sgd,momentum,rmsprop,adam",
              "lr": args.lr or "1e-4:1e-1:8"}
    try:
        cfg = SweepBenchConfig(settings({}, given),
                               rows=tuple(r.strip() for r in args.rows.split(",")),
                               threads=args.threads and capped("sweep-bench", args.threads),
                               repeats=args.repeats)
        cfg.validate()
        if args.json is not None and not args.json.parent.is_dir():
            raise ValueError(f"Invalid --json {args.json}: directory {args.json.parent} "
                             "does not exist")
        dataset = load_dataset(cfg.sweep)
    except (ValueError, TypeError, OSError) as e:
        print(f"optimlab sweep-bench: error: {e}", file=sys.stderr)
        return 2
    if args.report:
        from optimlab.bench.pages import SWEEP_1000, format_report_bench, report_bench

        result = report_bench(args.repeats, dataset,  # the dataset just loaded, as named
                              SWEEP_1000 | {"dataset": args.dataset})
        summary = format_report_bench(result)
    elif args.fixed_costs:
        from optimlab.bench import fixed_costs

        rows = fixed_costs.run(fixed_costs.selected(fixed_costs.FIXED), args.repeats)
        result = {"fixed_costs": rows, "goal": fixed_costs.goal_line(rows)}
        summary = f"{fixed_costs.format_table(rows)}\n{result['goal']}"
    elif args.store:
        from optimlab.bench.store import format_store_rate, store_rate

        result = store_rate(args.store, cfg.sweep.steps_for(0), cfg.sweep.eval_every,
                            args.repeats)
        summary = format_store_rate(result)
    elif args.step_times:
        result = step_times(cfg.sweep, dataset, rounds=args.step_times, threads=cfg.threads)
        summary = format_step_times(result)
    else:
        result = run_sweep_bench(cfg, dataset,
                                 progress=lambda what: print(f"... {what}", file=sys.stderr))
        summary = format_summary(result)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text if not args.json else summary)
    return 0


def _halving(args: argparse.Namespace, given: dict[str, object]) -> int:
    """--halving: the same random configurations swept with halving and in full."""
    try:
        cfg = settings({}, given)
        dataset = load_dataset(cfg)
    except (ValueError, TypeError, OSError) as e:
        print(f"optimlab sweep-bench: error: {e}", file=sys.stderr)
        return 2
    threads = args.threads and capped("sweep-bench", args.threads)
    with torch_threads(threads) if threads else contextlib.nullcontext():
        result = run_halving_bench(cfg, dataset,
                                   progress=lambda what: print(f"... {what}", file=sys.stderr))
    result["settings"]["threads"] = threads
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(format_halving(result))
    return 0
