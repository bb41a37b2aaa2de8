"""Measuring on a CUDA device: step times from CUDA events, extra peak memory from torch's
caching allocator, and what the run needs (a device, the Triton kernels).

A sample is `inner` back-to-back steps between two events recorded on the current
stream, so it is the device's time for those steps, launch gaps included: a step
whose host work (building its table, launching) is slower than its kernels shows
up as such. The stream `a += b` on the device gives the roofline, as on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from optimlab import kernels


def unavailable() -> str | None:
    """Why the CUDA benchmark cannot run here (None when it can)."""
    if not torch.cuda.is_available():
        return (f"no CUDA device (torch {torch.__version__}, "
                "torch.cuda.is_available() is False); run it on a machine with a GPU")
    try:
        kernels.backend("cuda")
    except ImportError as e:
        return f"the Triton kernels cannot load ({e})"
    return None


def time_once(step: Callable[[], None], inner: int) -> float:
    """Seconds per call of `step` on the device, over `inner` back-to-back calls."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(inner):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / inner


def extra_peak_bytes(step: Callable[[], None]) -> int:
    """Peak allocated device memory during `step()` above what was allocated before it."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return max(0, torch.cuda.max_memory_allocated() - before)


def machine() -> dict[str, Any]:
    import triton

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"gpu": props.name, "capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda, "triton": triton.__version__}
