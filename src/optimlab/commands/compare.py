"""`optimlab compare`: train each optimizer on one dataset and write a report.

Flags map onto `optimlab.lab.CompareConfig`; bad values stop with exit code 2 and a
message naming the flag, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from optimlab import models, report
from optimlab._imports import is_import_path
from optimlab.analysis.audit import audit_lines
from optimlab.commands._args import add_threads, capped, positive_int, torch_threads
from optimlab.commands._progress import steps_display
from optimlab.data.dataset import describe
from optimlab.lab import DEFAULT_LR, DEFAULT_STEPS, CompareConfig, Comparison
from optimlab.lab.compare import ALPHA, EXECUTORS, load_settings
from optimlab.lab.diagnostics import StepSizeRecorder
from optimlab.lab.entries import parse_list, texts, with_label
from optimlab.lab.experiment import DiskFull, out_path
from optimlab.lab.policy import default_threads
from optimlab.lab.tuning import DEFAULT_TUNE_TRIALS, tune, tuning_sweep
from optimlab.report.table import (
    COLUMNS,
    COMPARISON_COLUMNS,
    comparison_rows,
    comparisons_caption,
    table_rows,
)
from optimlab.report.tensorboard import LiveLogger
from optimlab.report.tensorboard import require as require_tensorboard
from optimlab.train import TASKS, schedules


def _optimizer_list(text: str) -> tuple[str, ...]:
    """Entries `[LABEL=]NAME[(key=value, ...)]`, checked before anything trains."""
    try:
        return texts(parse_list(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _number(text: str, ok: Callable[[float], bool], allowed: str) -> float:
    """`text` as a float for which `ok` holds, or an argparse error saying what is allowed."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: {allowed}")
    return value


def _lr_pair(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")  # a label may hold "=" (adam(betas=...))
    allowed = "LABEL=VALUE, LABEL an optimizer's label, VALUE > 0 (e.g. adam=1e-3)"
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: {allowed}")
    try:
        return name, _number(value, lambda v: v > 0, allowed)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: {allowed}") from None


def _accuracy(text: str) -> float | str:
    if text.lower() == "none":
        return "none"  # given as none: no target (the flag's absence means the default)
    return _number(text, lambda v: 0 < v <= 1, "a fraction in (0, 1], or none")


def _model(text: str) -> str:
    if text in models.MODELS or is_import_path(text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}; allowed: {', '.join(models.MODELS)} or "
                                     "module:callable returning an nn.Module")


def _schedule(text: str) -> str:
    try:
        return schedules.canonical(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: {schedules.ALLOWED}") from None


def _fraction(text: str) -> float:
    return _number(text, lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults are None here, so that a --config file fills what no flag gives.
    d = CompareConfig()
    p.add_argument("--config", type=Path, help="a TOML file with the same keys (flags win)")
    p.add_argument("--dataset", help=f"a dataset name, npz:PATH, or module:callable returning "
                                     f"(train, test) (default {d.dataset})")
    p.add_argument("--model", type=_model, help=f"{', '.join(models.MODELS)}, or module:callable "
                                                f"returning an nn.Module (default {d.model})")
    p.add_argument("--optimizers", type=_optimizer_list, metavar="ENTRIES",
                   help="comma-separated entries [LABEL=]NAME[(key=value, ...)], NAME built-in "
                        "or module:Class of a torch.optim.Optimizer, e.g. \"adam, "
                        "slow=adam(betas=(0.5, 0.999)), torch.optim:NAdam(lr=2e-3)\" "
                        f"(default {','.join(d.optimizers)})")
    p.add_argument("--task", choices=TASKS, help=f"(default {d.task}; regression: squared "
                                                 "error, loss as the metric)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int,
                        help=f"optimizer steps per run (default {DEFAULT_STEPS})")
    length.add_argument("--epochs", type=positive_int, help="passes over the training set")
    p.add_argument("--batch-size", type=positive_int,
                   help=f"minibatch size (default {d.batch_size})")
    defaults = " ".join(f"{k}={v:g}" for k, v in DEFAULT_LR.items())
    p.add_argument("--lr", type=_lr_pair, nargs="+", action="extend", default=[],
                   metavar="LABEL=VALUE", help=f"learning rates (defaults: {defaults}; an "
                                               "entry's own lr wins)")
    p.add_argument("--schedule", type=_schedule, metavar="SPEC",
                   help=f"learning-rate schedule: {schedules.ALLOWED} (default {d.schedule})")
    p.add_argument("--seeds", type=positive_int,
                   help=f"runs per optimizer, seeds 0..N-1 (default {d.seeds})")
    p.add_argument("--target-acc", type=_accuracy,
                   help=f"val accuracy for 'time to target', or none (default {d.target_acc})")
    p.add_argument("--target-loss", type=lambda t: _number(t, lambda v: v > 0, "a number > 0"),
                   help="val loss for 'time to target' (regression; default none)")
    p.add_argument("--eval-every", type=positive_int,
                   help=f"steps between evaluations (default {d.eval_every})")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help=f"(default {d.device})")
    p.add_argument("--data-dir", help="folder with the dataset's files")
    p.add_argument("--download", action="store_true", default=None,
                   help="download the dataset's missing files (MNIST, Fashion-MNIST, CIFAR-10)")
    p.add_argument("--val-fraction", type=_fraction,
                   help=f"share of train held out for validation (default {d.val_fraction}; "
                        "0: train on all, as the MNIST-1D paper)")
    p.add_argument("--out", help="output folder (default runs/compare-<timestamp>)")
    p.add_argument("--executor", choices=EXECUTORS, default="vectorized",
                   help="vectorized: every seed and entry as members of one group, what it "
                        "cannot take (schedules, module:Class optimizers, models that are not "
                        "functional) one by one; sequential: one run after another; "
                        "--diagnostics and --tensorboard train one by one (default vectorized)")
    add_threads(p, "every core for the vectorized executor and --tune's sweep; 1 for runs one "
                   "by one, which these small models train fastest on")
    p.add_argument("--tune", action="store_true",
                   help="first tune every hyperparameter of each optimizer's declared search "
                        "space (η, 1-β, ε, ...) by random search on validation, the same "
                        "--tune-trials × steps for each (stored in OUT/tune); --lr values and "
                        "an entry's own stay fixed")
    p.add_argument("--tune-trials", type=positive_int, metavar="N",
                   help="with --tune: random-search trials per optimizer, each as long as a "
                        f"comparison run (default {DEFAULT_TUNE_TRIALS})")
    p.add_argument("--diagnostics", type=positive_int, nargs="?", const=50, default=None,
                   metavar="EVERY", help="record step sizes and ‖Δw‖/‖w‖ every EVERY steps "
                   "(default off; bare flag: 50) into diagnostics.json and the report")
    p.add_argument("--tensorboard", type=Path, metavar="DIR", help="also write TensorBoard "
                   "event files into DIR while training, one run per run (tensorboard extra)")
    p.add_argument("--alpha", type=lambda t: _number(t, lambda v: 0 < v < 0.5,
                                                     "a number in (0, 0.5)"), default=ALPHA,
                   help=f"level of the paired tests between entries, not RMSprop's α "
                        f"(default {ALPHA:g})")


def _settings(args: argparse.Namespace) -> CompareConfig:
    """The flags given (None: not given) over the --config file over the defaults."""
    flags = {k: getattr(args, k) for k in (
        "dataset", "model", "optimizers", "task", "steps", "epochs", "batch_size", "schedule",
        "seeds", "target_acc", "target_loss", "eval_every", "device", "data_dir", "download",
        "val_fraction")}
    flags["lr"] = _lr_table(args.lr) or None
    return load_settings(args.config, flags)


def _lr_table(pairs: list[tuple[str, float]]) -> dict[str, float]:
    """--lr's LABEL=VALUE pairs as a table; a label given twice is refused, not overwritten."""
    table: dict[str, float] = {}
    for label, value in pairs:
        if label in table:
            raise ValueError(f"Invalid --lr {label}={value:g}: {label} is already given "
                             f"({label}={table[label]:g}); allowed: one value per label")
        table[label] = value
    return table


def command_line(cfg: CompareConfig, out: Path, threads: int | None,
                 executor: str = "vectorized") -> str:
    """The exact command, every setting explicit, so it reproduces the runs (`threads`:
    None when not given, so that the command picks them again where it runs; `executor`:
    in float32 a member's results agree with its single run's within seed-to-seed noise)."""
    families = ", ".join(with_label(e, cfg.hyperparameters(e)) for e in cfg.entries)
    argv = ["optimlab", "compare", "--dataset", cfg.dataset, "--model", cfg.model,
            "--optimizers", families, "--task", cfg.task]
    argv += ["--epochs", str(cfg.epochs)] if cfg.epochs else ["--steps", str(cfg.steps_for(0))]
    argv += ["--batch-size", str(cfg.batch_size),
             "--schedule", cfg.schedule, "--seeds", str(cfg.seeds),
             "--eval-every", str(cfg.eval_every), "--executor", executor,
             "--val-fraction", f"{cfg.val_fraction:g}", "--device", cfg.device,
             *(["--threads", str(threads)] if threads else []), "--out", str(out)]
    argv += ["--target-acc", f"{cfg.target_acc:g}" if cfg.target_acc else "none"]
    argv += ["--target-loss", f"{cfg.target_loss:g}"] if cfg.target_loss else []
    argv += ["--data-dir", cfg.data_dir] if cfg.data_dir else []
    argv += ["--download"] if cfg.download else []
    return shlex.join(argv)


class _ProgressBar:
    """A callback (see optimlab.train.loop) that moves one rich progress bar per run."""

    def __init__(self, progress: Progress, run: str, steps: int) -> None:
        self.progress, self.task = progress, progress.add_task(run, total=steps)

    def on_step_end(self, step: int, model: Any, optimizer: Any) -> None:
        self.progress.update(self.task, completed=step)


def _run_line(r: dict[str, Any]) -> str:
    if r["diverged"]:
        return f"{r['run']}: diverged at step {r['diverged_step']} (recorded; going on)"
    if r["final_test_acc"] is None:  # regression: the loss is the metric
        return (f"{r['run']}: test loss {r['final_test_loss']:.4g}, "
                f"{r['train_seconds']:.1f} s training")
    return (f"{r['run']}: test acc {r['final_test_acc']:.1%} (best {r['best_test_acc']:.1%}), "
            f"{r['train_seconds']:.1f} s training")


def _print_table(console: Console, records: list[dict[str, Any]]) -> None:
    table = Table(title="optimlab compare (mean ± std over seeds)")
    for c in COLUMNS:
        table.add_column(c, justify="left" if c in ("optimizer", "hyperparameters") else "right")
    for row in table_rows(records):
        table.add_row(*row)
    console.print(table)


def _print_comparisons(console: Console, rows: list[dict[str, Any]]) -> None:
    """Each (a vs b, measure): difference [interval], p (Holm-corrected) and the verdict."""
    if not rows:
        return
    table = Table(title=escape(f"paired comparisons ({comparisons_caption(rows)})"))
    for c in COMPARISON_COLUMNS:
        table.add_column(escape(c), justify="right" if c.startswith(("diff", "p ")) else "left")
    for row in comparison_rows(rows):
        table.add_row(*map(escape, row))
    console.print(table)


def _executor(args: argparse.Namespace) -> str:
    """--executor, unless a per-run callback (--diagnostics, --tensorboard) needs runs of
    their own."""
    return "sequential" if args.diagnostics or args.tensorboard else args.executor


def _train_vectorized(comparison: Comparison, console: Console) -> list[dict[str, Any]]:
    """One bar for every member-step of the group."""
    with steps_display(console, "training") as (show, shown):
        return comparison.run(on_record=lambda r: shown.print(_run_line(r)),
                              executor="vectorized", on_progress=show, say=shown.print)


def _train(comparison: Comparison, console: Console, diagnostics: int | None,
           tensorboard: Path | None = None) -> list[dict[str, Any]]:
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bars: dict[str, _ProgressBar] = {}
        loggers: dict[str, LiveLogger] = {}

        def new_bar(config: Any, run: str) -> list[Any]:
            bars[run] = _ProgressBar(progress, run, config.steps)
            callbacks: list[Any] = [bars[run]]
            if tensorboard:
                callbacks.append(loggers.setdefault(run, LiveLogger(tensorboard, run)))
            return callbacks + ([StepSizeRecorder(every=diagnostics)] if diagnostics else [])

        def finished(record: dict[str, Any]) -> None:
            progress.stop_task(bars[record["run"]].task)  # a diverged run's bar stops short
            progress.console.print(_run_line(record))
            if record["run"] in loggers:
                loggers.pop(record["run"]).finish(record)

        return comparison.run(callbacks=new_bar, on_record=finished, executor="sequential")


def tuning_lines(tuning: dict[str, dict[str, Any]]) -> list[str]:
    """What `--tune` chose per optimizer, its budget, and where it could not choose (the
    edges: see the audit)."""
    lines = []
    for name, t in tuning.items():
        budget = f"{t['trials']} trials × {t['steps_per_trial']} steps"
        if t["all_diverged"]:
            lines.append(f"{name}: every trial diverged ({budget}); the comparison uses η "
                         f"{t['lr']:g} ({t['source']})")
            continue
        values = ", ".join(f"{'η' if k == 'lr' else k} {v:g}" for k, v in t["values"].items())
        fixed = "" if t["source"] == "tuned" else \
            f"η {t['lr']:g} {'as given' if t['source'] == 'given' else 'the lab default'}, "
        lines.append(f"{name}: {fixed}tuned {values} ({budget})" if values else
                     f"{name}: {fixed}not tuned (budget 0)")
    return lines


def _error(message: Any) -> int:
    print(f"optimlab compare: error: {message}", file=sys.stderr)
    return 2


def _compare(args: argparse.Namespace, console: Console, tuning_threads: int) -> int:
    out = out_path(args.out, "compare")
    try:  # bad input: everything checked before anything trains
        if args.tensorboard:
            require_tensorboard()
        cfg = _settings(args)
        if args.tune_trials and not args.tune:
            raise ValueError(f"Invalid --tune-trials {args.tune_trials} without --tune; "
                             "allowed: --tune --tune-trials N")
        trials = args.tune_trials or DEFAULT_TUNE_TRIALS
        sweep = tuning_sweep(cfg, out / "tune", trials) if args.tune else None
    except (ValueError, TypeError, OSError, ImportError) as e:
        return _error(e)
    tuning = None
    if args.tune:
        if sweep is not None:
            console.print(f"tuning on validation, {trials} random trials per "
                          f"optimizer: {sweep.store.path}")
        try:
            with steps_display(console, "tuning") as (show, _), torch_threads(tuning_threads):
                cfg, tuning = tune(cfg, sweep, on_progress=show)
        except DiskFull as e:
            print(f"optimlab compare: error: {e}", file=sys.stderr)
            return 1
        for line in tuning_lines(tuning):
            console.print(line)
    try:
        comparison = Comparison(cfg, out, command=command_line(cfg, out, args.threads,
                                                                 _executor(args)),
                                tuning=tuning, alpha=args.alpha,
                                dataset=sweep.dataset if sweep is not None else None)
    except (ValueError, TypeError, OSError) as e:
        return _error(e)
    ds = comparison.dataset
    console.print(describe(ds))
    if comparison.store.finished:
        console.print(f"resuming {out}: {len(comparison.store.finished)} finished runs kept")
    try:
        records = (_train_vectorized(comparison, console) if _executor(args) == "vectorized"
                   else _train(comparison, console, args.diagnostics, args.tensorboard))
    except KeyboardInterrupt:
        console.print(f"the same command resumes: finished runs, and the checkpoints of the "
                      f"runs in flight, are kept in {out}; render them: optimlab report {out}")
        raise
    except DiskFull as e:
        print(f"optimlab compare: error: {e}", file=sys.stderr)
        return 1
    _print_table(console, records)
    for line in audit_lines(comparison.audit):
        console.print(escape(line), soft_wrap=True)
    _print_comparisons(console, comparison.comparisons)
    console.print(f"report: {report.render(out)}")
    return 0


def run(args: argparse.Namespace) -> int:
    args.threads = args.threads and capped("compare", args.threads)
    # before anything records the environment
    with torch_threads(args.threads or default_threads(_executor(args))):
        console = Console()
        # Logs and pipes get a table wide enough to read instead of rich's 80 columns.
        return _compare(args, console if console.is_terminal else Console(width=160),
                        args.threads or default_threads("vectorized"))
