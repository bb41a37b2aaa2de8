"""One benchmark run: every optimizer × model × implementation, side by side, as plain records."""

from __future__ import annotations

import gc
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numba
import torch

from optimlab.bench import cuda, measure
from optimlab.bench.cases import (
    BYTES_PER_PARAM,
    MODELS,
    implementations,
    make_params,
    peer_class,
)
from optimlab.bench.lab_scale import LAB_MODELS, run_lab_case
from optimlab.bench.report import goals
from optimlab.optim import LECTURE

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}
DEVICES = ("cpu", "cuda")
# Storage dtypes the CPU kernels take; the CUDA kernels take float32, bfloat16 and float16.
DEVICE_DTYPES = {"cpu": ("float32", "float64"), "cuda": ("float32", "bfloat16", "float16")}


@dataclass
class BenchConfig:
    optimizers: tuple[str, ...] = LECTURE  # the lecture's four
    # the throughput sizes, then the lab's own models (where a step is all fixed cost)
    models: tuple[str, ...] = ("1M", "25M", "mixed", "small200", *LAB_MODELS)
    dtype: str = "float32"  # what models train in; float64 moves twice the bytes
    repeats: int = 11  # interleaved rounds; the median of 11 ignores 5 disturbed ones
    warmup: int = 3  # untimed steps first: state allocation, JIT load, caches
    sample_s: float = 0.005  # steps per sample are batched to last this long (timer noise)
    memory: bool = True  # measure extra peak memory per step (Linux only)
    threads: int | None = None  # torch.set_num_threads for the run (ours follow); None: as is
    device: str = "cpu"  # "cuda": the Triton kernels against torch's CUDA paths, CUDA events

    def validate(self) -> None:
        for name in self.optimizers:
            if name not in BYTES_PER_PARAM:
                raise ValueError(f"Invalid optimizer: {name!r}; allowed: "
                                 f"{', '.join(BYTES_PER_PARAM)}")
            peer_class(name)  # a package's peer not installed: said before anything is timed
        for name in self.models:
            if name not in MODELS and name not in LAB_MODELS and not _is_custom(name):
                raise ValueError(f"Invalid model: {name!r}; allowed: "
                                 f"{', '.join([*MODELS, *LAB_MODELS])} "
                                 "or NxM (N tensors of M parameters, e.g. 8x1000)")
        if self.device not in DEVICES:
            raise ValueError(f"Invalid device: {self.device!r}; allowed: {', '.join(DEVICES)}")
        if self.dtype not in DEVICE_DTYPES[self.device]:
            raise ValueError(f"Invalid dtype: {self.dtype!r} on {self.device}; allowed: "
                             f"{', '.join(DEVICE_DTYPES[self.device])}")
        lab = [m for m in self.models if m in LAB_MODELS]
        if self.device != "cpu" and lab:
            raise ValueError(f"Invalid model: {lab[0]!r} with device {self.device!r}; the "
                             "lab-scale cases run on the CPU only")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"Invalid threads: {self.threads}; allowed: >= 1")
        if self.repeats < 1 or self.warmup < 1:
            raise ValueError(f"Invalid repeats={self.repeats} / warmup={self.warmup}; "
                             "allowed: >= 1")


def _is_custom(name: str) -> bool:
    count, _, size = name.partition("x")
    return count.isdigit() and size.isdigit() and int(count) > 0 and int(size) > 0


def model_shapes(name: str) -> tuple[str, list[tuple[int, ...]]]:
    """(description, shapes) of a named model, or of "NxM": N tensors of M parameters."""
    if name in MODELS:
        description, shapes = MODELS[name]
        return description, shapes()
    count, _, size = name.partition("x")
    return f"{count} tensors of {size} parameters", [(int(size),)] * int(count)


def _row(name: str, opt: torch.optim.Optimizer, samples: list[float], traffic: float,
         stream_gbs: float, extra: int | None) -> dict[str, Any]:
    seconds = measure.median(samples)
    gbs = traffic / seconds / 1e9
    return {"impl": name, "path": ",".join(getattr(opt, "last_impl", [])) or None,
            "ms": seconds * 1e3, "gbs": gbs, "roofline": gbs / stream_gbs,
            "extra_peak_mb": None if extra is None else extra / 2**20,
            "samples_ms": [s * 1e3 for s in samples]}


def run_case(optimizer: str, model: str, cfg: BenchConfig, memory: bool) -> dict[str, Any]:
    """All implementations of one optimizer on one model, timed in the same rounds."""
    dtype = DTYPES[cfg.dtype]
    description, shapes = model_shapes(model)
    params = make_params(shapes, dtype, device=cfg.device)
    numel = sum(p.numel() for p in params)
    opts = {impl.name: impl.make(params) for impl in implementations(optimizer)}
    steps: dict[str, Callable[[], None]] = {n: o.step for n, o in opts.items()}
    steps["stream"] = measure.stream_step(numel, dtype, cfg.device)
    for step in steps.values():
        for _ in range(cfg.warmup):
            step()
    on_gpu = cfg.device == "cuda"
    probe = cuda.extra_peak_bytes if on_gpu else measure.extra_peak_bytes
    extra = {n: probe(s) if memory else None for n, s in steps.items()}
    samples = measure.interleaved_medians(steps, cfg.repeats, cfg.sample_s,
                                          cuda.time_once if on_gpu else measure.time_once)
    itemsize = params[0].element_size()
    stream_gbs = 3 * itemsize * numel / measure.median(samples["stream"]) / 1e9
    traffic = BYTES_PER_PARAM[optimizer] * itemsize / 4 * numel
    rows = [_row(n, o, samples[n], traffic, stream_gbs, extra[n]) for n, o in opts.items()]
    return {"optimizer": optimizer, "model": model, "description": description,
            "dtype": cfg.dtype, "params": numel, "tensors": len(params),
            "bytes_per_param": BYTES_PER_PARAM[optimizer] * itemsize // 4,
            "stream": {"ms": measure.median(samples["stream"]) * 1e3, "gbs": stream_gbs,
                       "extra_peak_mb": None if extra["stream"] is None
                       else extra["stream"] / 2**20},
            "rows": rows}


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None,
              checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The whole run as one JSON-ready record: machine, config, cases, goals.

    `checkpoint(record)` gets the record after every case ("complete": False
    until the last), so an interrupted run keeps what it measured.
    """
    cfg.validate()
    if cfg.device == "cuda" and (reason := cuda.unavailable()) is not None:
        raise ValueError(f"Invalid device: 'cuda': {reason}")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    memory = cfg.memory and (cfg.device == "cuda" or measure.memory_probe_available())
    record: dict[str, Any] = {"config": asdict(cfg), "machine": machine(cfg.device),
                              "memory_measured": memory, "complete": False,
                              "cases": [], "goals": []}
    for model in cfg.models:
        for optimizer in cfg.optimizers:
            if progress:
                progress(f"{optimizer} on {model}")
            if model in LAB_MODELS:
                case = run_lab_case(optimizer, model, DTYPES[cfg.dtype], cfg.repeats,
                                    cfg.warmup, cfg.sample_s)
            else:
                case = run_case(optimizer, model, cfg, memory)
            record["cases"].append(case)
            record["goals"] = goals(record["cases"], cfg.device)
            gc.collect()
            if checkpoint:
                checkpoint(record)
    record["complete"] = True
    return record


def machine(device: str = "cpu") -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numba": numba.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            **(cuda.machine() if device == "cuda" else {})}
