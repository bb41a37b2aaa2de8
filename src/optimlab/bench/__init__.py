"""The optimizer benchmark: ms/step, effective GB/s, fraction of the roofline, extra peak memory.

Every implementation of an optimizer (ours: reference, foreach, fused; torch's:
single-tensor, foreach, fused where it exists) steps the same parameters, in
interleaved rounds together with an in-place stream `a += b` of the same size,
so the roofline (bytes per parameter ÷ stream bandwidth) and all ratios come
from one run on one noisy machine. `run_bench` returns a plain record (JSON),
`format_table` renders it for people.
"""

from optimlab.bench.cases import BYTES_PER_PARAM, MODELS
from optimlab.bench.report import format_table, goals
from optimlab.bench.run import BenchConfig, run_bench

__all__ = ["BYTES_PER_PARAM", "MODELS", "BenchConfig", "format_table", "goals", "run_bench"]
