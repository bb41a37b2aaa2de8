"""Measuring: step times (interleaved, medians), the in-place stream bandwidth, peak memory.

Extra peak memory is the growth of the process's peak resident set during one
step (Linux: reset with /proc/self/clear_refs, read VmHWM). glibc's malloc is
told to serve large blocks with mmap and give them back on free, so that a
temporary faults in fresh pages instead of reusing freed ones unseen.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
# Blocks above this go through mmap (glibc M_MMAP_THRESHOLD = -3); fixing it
# also stops glibc from raising the threshold after a large free.
_MMAP_THRESHOLD = 256 * 1024


def _status_kb(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def memory_probe_available() -> bool:
    """True where peak resident memory can be reset and read (Linux)."""
    try:
        _CLEAR_REFS.write_text("5")
        _status_kb("VmHWM")
    except (OSError, KeyError):
        return False
    name = ctypes.util.find_library("c")
    if name:
        ctypes.CDLL(name).mallopt(-3, _MMAP_THRESHOLD)
    return True


def extra_peak_bytes(step: Callable[[], None]) -> int:
    """Peak resident memory during `step()` above the resident memory before it."""
    gc.collect()
    _CLEAR_REFS.write_text("5")  # peak := current
    before = _status_kb("VmRSS")
    step()
    return max(0, _status_kb("VmHWM") - before) * 1024


def time_once(step: Callable[[], None], inner: int) -> float:
    """Seconds per call of `step`, over `inner` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(inner):
        step()
    return (time.perf_counter() - t0) / inner


def calls_per_sample(step: Callable[[], None], target_s: float,
                     timer: Callable[[Callable[[], None], int], float] = time_once) -> int:
    """How many back-to-back calls make one sample last about `target_s` (timer noise)."""
    one = timer(step, 1)
    return max(1, min(1000, round(target_s / max(one, 1e-7))))


def interleaved_medians(steps: dict[str, Callable[[], None]], repeats: int, target_s: float,
                        timer: Callable[[Callable[[], None], int], float] = time_once
                        ) -> dict[str, list[float]]:
    """Per name, `repeats` samples (s/call), taken round-robin so drift hits all alike;
    `timer(step, inner)` takes one sample (`time_once`, or CUDA events on a GPU)."""
    inner = {name: calls_per_sample(fn, target_s, timer) for name, fn in steps.items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(repeats):
        # rotate the order each round: no implementation always runs after the slowest one
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples[name].append(timer(steps[name], inner[name]))
    return samples


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def stream_step(numel: int, dtype: torch.dtype, device: str = "cpu") -> Callable[[], None]:
    """The in-place stream a += b over `numel` elements: 3 accesses per element."""
    a = torch.zeros(numel, dtype=dtype, device=device)
    b = torch.ones(numel, dtype=dtype, device=device)

    def stream() -> None:
        a.add_(b)

    return stream
