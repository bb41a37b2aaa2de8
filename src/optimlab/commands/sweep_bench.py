"""`optimlab sweep-bench`: one sweep under several executors, side by side, as JSON.

The default is the issue's goal: 4 optimizers × 8 learning rates, the MLP on MNIST-1D,
2000 steps, batch 100, one seed; vectorized against sequential. Each executor starts
from an empty folder; "wall_s" is the whole sweep (training and evaluation), "train_s"
the summed training time of its runs (evaluation excluded). Agreement: the largest
difference of a final metric between matching runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from optimlab import data
from optimlab.lab.environment import environment
from optimlab.lab.grid import EXECUTORS, settings, with_executor
from optimlab.lab.sweep import Sweep


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimizers", default="sgd,momentum,rmsprop,adam", help="comma-separated")
    p.add_argument("--lr", default="1e-4:1e-1:8", help="η grid (default 1e-4:1e-1:8)")
    p.add_argument("--steps", type=int, default=2000, help="steps per run (default 2000)")
    p.add_argument("--batch-size", type=int, default=100, help="(default 100)")
    p.add_argument("--model", default="mlp", help="(default mlp)")
    p.add_argument("--dataset", default="mnist1d", help="(default mnist1d)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="float64: runs agree to ~1e-9, so the agreement shows equal results")
    p.add_argument("--executors", default="vectorized,sequential",
                   help=f"comma-separated from {', '.join(EXECUTORS)} (default "
                        "vectorized,sequential)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", type=Path, help="also write the result to this file")


def _time_sweep(cfg: Any, dataset: Any, out: Path) -> tuple[dict[str, Any], list[dict]]:
    t0 = time.perf_counter()
    records = Sweep(cfg, out, dataset=dataset).run()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "train_s": sum(r["train_seconds"] for r in records),
            "runs": len(records), "diverged": sum(r["diverged"] for r in records)}, records


def _agreement(a: list[dict], b: list[dict]) -> dict[str, Any]:
    """Largest |difference| of final metrics between runs of the same name."""
    by_run = {r["run"]: r for r in b}
    out: dict[str, Any] = {"same_diverged": all(r["diverged"] == by_run[r["run"]]["diverged"]
                                                for r in a)}
    for key in ("final_val_acc", "final_test_acc", "final_train_loss"):
        diffs = [abs(r[key] - by_run[r["run"]][key]) for r in a
                 if r[key] is not None and by_run[r["run"]][key] is not None]
        out[f"max_abs_diff_{key}"] = max(diffs, default=None)
    # Chaotic runs (e.g. RMSprop at a large η) part ways from any rounding difference; name them.
    out["runs_differing_over_1e-6"] = [
        r["run"] for r in a if r["final_train_loss"] is not None and
        abs(r["final_train_loss"] - by_run[r["run"]]["final_train_loss"])
        > 1e-6 * abs(r["final_train_loss"])]
    return out


def run(args: argparse.Namespace) -> int:
    executors = [e.strip() for e in args.executors.split(",")]
    try:
        cfg = settings({}, {"optimizers": args.optimizers, "lr": args.lr, "steps": args.steps,
                            "batch_size": args.batch_size, "model": args.model,
                            "dataset": args.dataset, "eval_every": args.steps,
                            "dtype": args.dtype})
        bad = [e for e in executors if e not in EXECUTORS]
        if bad or args.threads < 1:
            raise ValueError(f"Invalid --executors {args.executors!r} or --threads "
                             f"{args.threads}; allowed: {', '.join(EXECUTORS)}; threads >= 1")
        dataset = data.load(cfg.dataset)
    except (ValueError, TypeError, OSError) as e:
        print(f"optimlab sweep-bench: error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"settings": vars(args) | {"json": str(args.json)},
                              "environment": environment(), "executors": {}}
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in executors:
            timing, records[name] = _time_sweep(with_executor(cfg, name), dataset,
                                                Path(tmp) / name)
            result["executors"][name] = timing
    first = executors[0]
    for name in executors[1:]:
        result[f"speedup_{first}_vs_{name}"] = (result["executors"][name]["wall_s"]
                                                / result["executors"][first]["wall_s"])
        result[f"agreement_{first}_vs_{name}"] = _agreement(records[first], records[name])
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0
