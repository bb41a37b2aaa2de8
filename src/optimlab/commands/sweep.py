"""`optimlab sweep`: hyperparameter grids per optimizer as one resumable job.

Flags map onto `optimlab.lab.grid.SweepConfig` and override the `--config` TOML file;
bad values stop with exit code 2 and a message naming the setting, the value and what
is allowed. Re-running with the same `--out` resumes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from optimlab import models
from optimlab.analysis.audit import audit_lines
from optimlab.commands._args import (
    add_threads,
    capped,
    eta,
    natural_int,
    number,
    positive_int,
    torch_threads,
)
from optimlab.commands._progress import steps_display
from optimlab.lab.experiment import DiskFull, out_path
from optimlab.lab.grid import (
    APPLIES,
    DEFAULT_LR_GRID,
    EXECUTORS,
    SEARCHES,
    SweepConfig,
    load_settings,
    point_value,
)
from optimlab.lab.policy import default_threads
from optimlab.lab.store import run_name
from optimlab.lab.sweep import Sweep
from optimlab.train import TASKS, RunResult, schedules

# Grid flags: --lr, --momentum, … (values: LO:HI:N, LO:HI or a comma-separated list).
GRID_FLAGS = {k: k.replace("_", "-") for k in APPLIES}


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = SweepConfig()
    p.add_argument("--config", type=Path, help="a TOML file with the same keys (flags win)")
    p.add_argument("--dataset", help=f"a dataset name, npz:PATH, or module:callable returning "
                                     f"(train, test) (default {d.dataset})")
    p.add_argument("--model", help=f"{', '.join(models.MODELS)}, or module:callable returning "
                                   f"an nn.Module (default {d.model})")
    p.add_argument("--optimizers", metavar="ENTRIES",
                   help="comma-separated entries [LABEL=]NAME[(key=value, ...)]; an entry's "
                        "own hyperparameters are kept, the grids sweep the others "
                        f"(default {','.join(d.optimizers)})")
    p.add_argument("--task", choices=TASKS, help=f"(default {d.task}; regression: squared "
                                                 "error, selection on val loss)")
    for key, flag in GRID_FLAGS.items():
        p.add_argument(f"--{flag}", dest=key, metavar="GRID",
                       help=f"{key} values for {', '.join(APPLIES[key])} and any module:Class "
                            "taking it: LO:HI:N (log-spaced), V,V,… or, with --search random, "
                            "LO:HI (sampled on its declared scale)"
                            + (f" (default {DEFAULT_LR_GRID})" if key == "lr" else ""))
    for name, help_ in (("seeds", f"seeds per configuration (default {d.seeds})"),
                        ("steps", f"optimizer steps per run (default {d.steps})"),
                        ("batch-size", f"minibatch size (default {d.batch_size})"),
                        ("eval-every", f"steps between evaluations (default {d.eval_every})"),
                        ("max-batch", f"members trained together (default {d.max_batch})")):
        p.add_argument(f"--{name}", type=positive_int, metavar="N", help=help_)
    p.add_argument("--schedule", metavar="SPEC", help="learning-rate schedule of every run: "
                   f"{schedules.ALLOWED} (default {d.schedule}; the vectorized executor trains "
                   "scheduled runs one by one)")
    p.add_argument("--epochs", type=positive_int, metavar="N",
                   help="passes over the training set (instead of --steps)")
    p.add_argument("--val-fraction", type=number,
                   help=f"share of train held out for validation (default {d.val_fraction})")
    p.add_argument("--device", choices=("cpu", "cuda"), help=f"(default {d.device})")
    p.add_argument("--download", action="store_true", default=None,
                   help="download the dataset's missing files (MNIST, Fashion-MNIST, CIFAR-10)")
    p.add_argument("--executor", choices=EXECUTORS, help=f"(default {d.executor})")
    p.add_argument("--ray-address", metavar="HOST:PORT",
                   help="with --executor ray: the cluster's head node (default $RAY_ADDRESS; "
                        "neither: a local Ray with this machine's cores)")
    p.add_argument("--dtype", choices=("float32", "float64"), help=f"(default {d.dtype})")
    p.add_argument("--select", choices=("val",),
                   help="tune on validation, re-run the best per optimizer with --seeds seeds")
    p.add_argument("--extend-edges", action="store_true", default=None,
                   help="with --select val: while a best value lies on an edge of its grid, "
                        "extend the grid past it and select again (DeepOBS practice)")
    p.add_argument("--search", choices=SEARCHES,
                   help="grid: every point of the lists; random: --trials configurations per "
                        "optimizer from LO:HI ranges (none given: its declared search space); "
                        "tpe: the same, asked of Optuna's TPE sampler (optuna extra) "
                        f"(default {d.search})")
    p.add_argument("--trials", type=positive_int, metavar="N",
                   help="with --search random or tpe: configurations per optimizer; more "
                        "trials into the same --out keep those done and add the rest")
    p.add_argument("--search-seed", type=natural_int, metavar="N",
                   help="with --search random or tpe: the seed of the sample (default "
                        f"{d.search_seed})")
    p.add_argument("--batch", type=positive_int, metavar="K",
                   help="with --search tpe: trials asked per optimizer before any is told, "
                        f"trained as one job (default {d.batch}; 1: trial by trial)")
    p.add_argument("--halving", type=eta, nargs="?", const=3, metavar="ETA",
                   help="successive halving: at each rung keep the best ceil(n/ETA) "
                        "configurations per optimizer (on val, seeds averaged), stop the rest "
                        "(ETA alone: 3); with --search tpe, each round of K trials is its own "
                        "bracket and its pruned trials are told to TPE as pruned")
    p.add_argument("--min-steps", type=positive_int, metavar="R",
                   help="with --halving: the first rung; the others at R·ETA, R·ETA², … below "
                        "--steps (default --eval-every)")
    p.add_argument("--data-dir", help="folder with the dataset's files")
    p.add_argument("--tensorboard", type=Path, metavar="DIR", help="also write TensorBoard "
                   "event files into DIR, each run as it finishes (tensorboard extra)")
    p.add_argument("--png", action="store_true",
                   help="also draw the page's figures as PNG files (for papers; each chart of "
                        "the page saves itself as a PNG too)")
    p.add_argument("--out", help="output folder; the same command into the same folder resumes "
                                 "(default runs/sweep-<timestamp>)")
    p.add_argument("--extend", action="store_true",
                   help="add grid points to the sweep stored in --out (its other settings "
                        "must stay the same)")
    add_threads(p, "--executor vectorized: every core, its groups side by side, one core "
                   "each; the others: 1")


def flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (None: not given)."""
    names = ("dataset", "model", "optimizers", "task", "seeds", "steps", "epochs", "batch_size",
             "eval_every", "max_batch", "executor", "dtype", "select", "data_dir", "download",
             "val_fraction", "device", "schedule", "extend_edges", "search", "trials",
             "search_seed", "batch", "halving", "min_steps", *APPLIES)
    return {n: getattr(args, n) for n in names}


def command_line(args: argparse.Namespace, out: Path) -> str:
    """The command that resumes (or repeats) this sweep."""
    argv = ["optimlab", "sweep"] + (["--config", str(args.config)] if args.config else [])
    for name, value in flags(args).items():
        if value is True:
            argv.append(f"--{name.replace('_', '-')}")
        elif value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    threads = ["--threads", str(args.threads)] if args.threads else []
    return shlex.join([*argv, *threads, "--out", str(out)])


def _line(result: RunResult) -> str:
    r = result.record
    if r["diverged"]:
        return f"{run_name(result.config)}: diverged at step {r['diverged_step']}"
    if r["final_val_acc"] is None:  # regression, or no validation split
        return (f"{run_name(result.config)}: val loss {r['final_val_loss'] or float('nan'):.4g}, "
                f"test loss {r['final_test_loss']:.4g}")
    return (f"{run_name(result.config)}: val acc {r['final_val_acc']:.1%}, "
            f"test acc {r['final_test_acc']:.1%}")


def _ray_cluster(cfg: SweepConfig, address: str | None) -> str:
    """With --executor ray: connect (or start a local Ray); a few words on the cluster."""
    if cfg.executor != "ray":
        if address is not None:
            raise ValueError(f"Invalid --ray-address {address!r} with --executor "
                             f"{cfg.executor}; allowed: only with --executor ray")
        return ""
    from optimlab.lab.ray_executor import check_device, connect
    check_device(cfg.device)
    resources = connect(address)
    return f" on {resources.get('CPU', 0):g} CPUs"


def _on_result(show: Callable[[str], Any], tensorboard: Path | None
               ) -> Callable[[RunResult], None]:
    """A finished run: its line in the terminal, and its event files when asked."""
    def on_result(result: RunResult) -> None:
        show(_line(result))
        if tensorboard:
            from optimlab.report.tensorboard import write_run

            write_run(tensorboard, {"run": run_name(result.config), **result.record},
                      result.curves)
    return on_result


def _run_with_progress(sweep: Sweep, console: Console, tensorboard: Path | None
                       ) -> list[dict[str, Any]]:
    """The sweep with a progress display: steps done (and shards, on Ray) as it goes."""
    with steps_display(console, "steps") as (show, out):
        return sweep.run(on_result=_on_result(out.print, tensorboard), on_progress=show)


# What widens the search past an edge: a grid's extension, or random search's range.
WIDEN = {"grid": "--select val --extend-edges widens the grid",
         "random": "a wider LO:HI range samples past it",
         "tpe": "a wider LO:HI range samples past it"}


def selection_lines(selection: dict[str, dict[str, Any]],
                    grids: dict[str, dict[str, tuple[float, ...]]],
                    search: str = "grid") -> list[str]:
    """Per optimizer: its selected point, and whether a value lies on an edge of its grid
    (for random search and TPE: of its range, see `optimlab.lab.search.EDGE_BAND`)."""
    lines = []
    for name, chosen in selection.items():
        hp = chosen["hyperparameters"]
        if chosen["all_diverged"]:
            lines.append(f"{name}: every grid point diverged; nothing selected")
            continue
        if hp is None:
            continue
        text = ", ".join(f"{k}={point_value(hp, k):g}" for k in grids[name])
        edge = "; ".join(f"{k} on the {side} edge of its grid {min(grids[name][k]):g}.."
                         f"{max(grids[name][k]):g}" for k, side in chosen["edge"].items())
        lines.append(f"{name}: best {text} (on val)" + (
            f"; {edge}: the optimum may lie beyond ({WIDEN[search]})" if edge else ""))
    return lines


def kept_line(sweep: Sweep, resume: str) -> str:
    """What an interrupted sweep kept in its store, and the command that goes on."""
    kept = sweep.store.checkpoint_steps()
    steps = sorted(set(kept.values()))
    at = f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}-{steps[-1]}" if steps else ""
    flight = (f" and checkpoints of {len(kept)} runs in flight (at step{'s' * (len(steps) > 1)} "
              f"{at} of {sweep.cfg.steps_for(sweep.n_train)})" if kept else "")
    return (f"kept in {sweep.store.path}: {sweep.store.finished_count()} finished runs"
            f"{flight}; resume: {resume}")


def _sweep(args: argparse.Namespace, console: Console) -> int:
    out = out_path(args.out, "sweep")
    try:
        if args.tensorboard:
            from optimlab.report.tensorboard import require

            require()
        cfg = load_settings(args.config, flags(args))
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"optimlab sweep: error: {e}", file=sys.stderr)
        return 2
    with torch_threads(_threads(args, cfg)):  # before the store records the environment
        return _sweep_with(args, cfg, out, console)


def _sweep_with(args: argparse.Namespace, cfg: SweepConfig, out: Path, console: Console) -> int:
    try:
        cluster = _ray_cluster(cfg, args.ray_address)
        sweep = Sweep(cfg, out, command=command_line(args, out), extend=args.extend)
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"optimlab sweep: error: {e}", file=sys.stderr)
        return 2
    console.print(f"{sweep.store.path}: {len(sweep.store.runs())} finished runs stored; "
                  f"executor {cfg.executor}{cluster}")
    stops: tuple[type[Exception], ...] = (DiskFull,)  # finished runs are safe: exit 1
    if cfg.executor == "ray":
        from optimlab.lab.ray_executor import ShardFailed
        stops += (ShardFailed,)
    try:
        records = _run_with_progress(sweep, console, args.tensorboard)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: say what is safe, then exit as the CLI does
        print(kept_line(sweep, command_line(args, out)), file=sys.stderr)
        raise
    except stops as e:
        print(f"optimlab sweep: error: {e}", file=sys.stderr)
        return 1
    for line in selection_lines(sweep.selected, sweep.grids(), cfg.search):
        console.print(line)
    for line in audit_lines(sweep.audit):  # with --select val: budgets, edges, seeds
        console.print(escape(line), soft_wrap=True)
    console.print(f"{len(records)} runs in {out}/summary.json, sweep.sqlite (curves as CSV: "
                  f"optimlab export csv {out})")
    from optimlab.report.sweep import render  # the report reads the store, never trains
    console.print(f"report: {render(out, sweep.finished, png=args.png)}")
    return 0


def _threads(args: argparse.Namespace, cfg: SweepConfig) -> int:
    """--threads, capped at this machine's cores unless Ray runs the tasks on a cluster
    (whose nodes may have more); not given: what helps the executor (`default_threads`)."""
    cluster = cfg.executor == "ray" and (args.ray_address or os.environ.get("RAY_ADDRESS"))
    if args.threads and not cluster:
        args.threads = capped("sweep", args.threads)
    return args.threads or default_threads(cfg.executor)


def run(args: argparse.Namespace) -> int:
    return _sweep(args, Console())
