"""`optimlab bench`: time every optimizer implementation, ours and torch's, side by side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optimlab.bench import MODELS, BenchConfig, cuda, format_table, run_bench
from optimlab.bench.lab_scale import LAB_MODELS
from optimlab.commands._args import add_threads, capped, positive_int
from optimlab.lab.entries import split_list

_DEFAULTS = BenchConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, metavar="PATH",
                   help="also write the full record (every sample) as JSON to PATH")
    p.add_argument("--optimizers", default=",".join(_DEFAULTS.optimizers), metavar="NAMES",
                   help=f"comma-separated (default {','.join(_DEFAULTS.optimizers)})")
    p.add_argument("--models", default=",".join(_DEFAULTS.models), metavar="MODELS",
                   help=f"comma-separated: {', '.join([*MODELS, *LAB_MODELS])}, or NxM for N "
                        "tensors of M parameters (default: all named; lab-*: the built-in "
                        "models' parameter lists, ours against torch's fastest step, CPU "
                        "only)")
    p.add_argument("--dtype", default=_DEFAULTS.dtype,
                   help="float32 (default) or float64; on cuda float32, bfloat16 or float16")
    p.add_argument("--repeats", type=positive_int, default=_DEFAULTS.repeats,
                   help=f"interleaved rounds, medians reported (default {_DEFAULTS.repeats})")
    add_threads(p, "torch's, one per core; the fused kernels use as many")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probe")
    p.add_argument("--device", default=_DEFAULTS.device, metavar="DEVICE",
                   help="cpu (default) or cuda: ours (Triton) against torch's CUDA paths, "
                        "timed with CUDA events (dtypes float32, bfloat16, float16)")


def run(args: argparse.Namespace) -> int:
    try:
        models = tuple(split_list(args.models))
        if args.device != "cpu" and models == _DEFAULTS.models:  # the lab-scale cases: CPU
            models = tuple(MODELS)
        cfg = BenchConfig(optimizers=tuple(split_list(args.optimizers)),
                          models=models, dtype=args.dtype,
                          repeats=args.repeats, memory=not args.no_memory,
                          threads=args.threads and capped("bench", args.threads),
                          device=args.device)
        cfg.validate()
        if cfg.device == "cuda" and (reason := cuda.unavailable()) is not None:
            raise ValueError(f"Invalid --device 'cuda': {reason}")
        if args.json is not None and not args.json.parent.is_dir():
            raise ValueError(f"Invalid --json {str(args.json)!r}: folder {args.json.parent} "
                             "does not exist")
    except ValueError as e:
        print(f"optimlab bench: error: {e}", file=sys.stderr)
        return 2
    def save(record: dict) -> None:
        if args.json is not None:  # after every case: an interrupted run keeps its results
            args.json.write_text(json.dumps(record, indent=1) + "\n")

    record = run_bench(cfg, progress=lambda what: print(f"... {what}", file=sys.stderr),
                       checkpoint=save)
    save(record)
    print(format_table(record))
    if args.json is not None:
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
