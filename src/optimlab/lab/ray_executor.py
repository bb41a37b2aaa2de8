"""The Ray executor: a sweep's vectorized shards as tasks on a Ray cluster.

- A shard is one group of `optimlab.lab.executors.groups`: the same members, in the
  same order, as the local vectorized executor trains together, so every run's numbers
  are the local ones (a run with a learning-rate schedule is a shard of its own,
  trained by `train_run`, as the vectorized executor trains it). One task trains one
  shard on `torch.get_num_threads()` CPUs (the driver's `--threads`) and returns all
  its results when it ends.
- The dataset enters Ray's object store once (`ray.put`); each node fetches it once and
  its tasks read it from there.
- Only the driver writes the store: `on_finish` runs in this process as each shard's
  results arrive (`ray.wait`). A killed driver loses only the shards in flight; they
  are still unfinished in the store and run again on resume.
- A worker that dies mid-shard has its shard run again by Ray (`max_retries`). A shard's
  results exist only once its task has returned, so each run reaches `on_finish` once.
- Progress: each task reports its shard's step to a small actor about twice a second;
  the driver reads it between arrivals (shards done, steps done, across the cluster).

Ray is an optional extra (`pip install optimlab[ray]`), imported only here and only
when this executor runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from optimlab.lab.executors import OnFinish, _Group, batchable, groups
from optimlab.lab.store import run_name
from optimlab.train import TrainConfig, train_run

INSTALL = "pip install 'optimlab[ray]'"
RETRIES = 3  # runs of a shard after its worker died, before the sweep gives up
REPORT_EVERY_S = 0.5  # how often a task reports its step, and the driver reads them
# Fault injection for the tests: "SHARD:MARKER_FILE" makes the worker of that shard exit
# halfway through its steps, on the first attempt only (the marker records that it did).
KILL_ONCE_ENV = "OPTIMLAB_RAY_KILL_ONCE"


class ShardFailed(RuntimeError):
    """A shard failed on every attempt (its worker kept dying)."""


@dataclass(frozen=True)
class Progress:
    """The sweep across the cluster: shards and optimizer steps, done and in all."""

    shards_done: int
    shards: int
    steps_done: int
    steps: int


def installed() -> bool:
    """Whether Ray can be imported (without importing it: that takes a second)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # a `ray` entry without a spec in sys.modules: blocked
        return False


def require_ray() -> Any:
    """The `ray` module, or a ValueError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ValueError(f"Invalid executor 'ray': Ray is not installed ({e}); install it "
                         f"with: {INSTALL}") from None
    return ray


def check_device(device: str) -> None:
    """Shards request CPUs only: GPU nodes are not scheduled as such (not supported yet)."""
    if device != "cpu":
        raise ValueError(f"Invalid device {device!r} with executor 'ray'; allowed: cpu "
                         "(Ray shards request CPUs only)")


def _check_address(address: str) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens there."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    allowed = ("allowed: the head node's HOST:PORT (printed by `ray start --head`), "
               "ray://HOST:PORT, or auto")
    if not host or not port.isdigit():
        raise ValueError(f"Invalid Ray address {address!r}; {allowed}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ValueError(f"Invalid Ray address {address!r}: cannot reach it "
                         f"({e.strerror or e}); {allowed}") from None


def connect(address: str | None = None) -> dict[str, float]:
    """Join the cluster at `address` (default: $RAY_ADDRESS), or else start a local Ray
    with this machine's cores; a process already connected stays on its cluster.
    Returns the cluster's resources ({"CPU": …, …})."""
    ray = require_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _check_address(address)
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
    return ray.cluster_resources()


class _Steps:
    """The Ray actor that holds each running shard's last reported step."""

    def __init__(self) -> None:
        self.steps: dict[int, int] = {}

    def set(self, shard: int, step: int) -> None:
        self.steps[shard] = step

    def get(self) -> dict[int, int]:
        return self.steps


class _ReportingGroup(_Group):
    """A vectorized group that calls `after_step(t)` after each of its steps."""

    def __init__(self, configs: list[TrainConfig], dataset: Any,
                 after_step: Callable[[int], None]) -> None:
        super().__init__(configs, dataset)
        self.after_step = after_step

    def _step(self, t: int, on_finish: OnFinish) -> None:
        super()._step(t, on_finish)
        self.after_step(t)


class _OnStep:
    """A `train_run` callback that calls `after_step(t)` after each step."""

    def __init__(self, after_step: Callable[[int], None]) -> None:
        self.on_step_end = lambda step, model, optimizer: after_step(step)


def _train_shard(index: int, configs: list[TrainConfig], dataset: Any, threads: int,
                 steps: Any, kill_once: str | None) -> list[Any]:
    """The Ray task: one shard trained as the vectorized executor trains it; its RunResults."""
    torch.set_num_threads(threads)
    last = [time.monotonic()]
    halfway = max(1, configs[0].steps // 2)

    def after_step(t: int) -> None:
        if kill_once and t == halfway:
            shard, _, marker = kill_once.partition(":")
            if int(shard) == index and _first_time(marker):
                os._exit(1)
        if steps is not None and time.monotonic() - last[0] >= REPORT_EVERY_S:
            steps.set.remote(index, t)
            last[0] = time.monotonic()

    if not batchable(configs[0]):
        return [train_run(c, dataset, callbacks=[_OnStep(after_step)]) for c in configs]
    results: list[Any] = []
    _ReportingGroup(configs, dataset, after_step).run(results.append)
    return results


def _first_time(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def run_ray(configs: Sequence[TrainConfig], dataset: Any, on_finish: OnFinish,
            max_batch: int = 64, *, address: str | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> None:
    """Train `configs` as vectorized shards of at most `max_batch` members on the Ray
    cluster (see `connect`); `on_finish` gets each result in this process, shard by
    shard as they end; `on_progress` the counts about every REPORT_EVERY_S seconds."""
    ray = require_ray()
    for device in {c.device for c in configs}:
        check_device(device)
    connect(address)
    shards = [[c] for c in configs if not batchable(c)] + groups(
        [c for c in configs if batchable(c)], max_batch)
    threads = torch.get_num_threads()
    task = ray.remote(num_cpus=threads, max_retries=RETRIES)(_train_shard)
    steps = ray.remote(num_cpus=0)(_Steps).remote() if on_progress else None
    data = ray.put(dataset)
    kill_once = os.environ.get(KILL_ONCE_ENV)
    pending = {task.remote(i, shard, data, threads, steps, kill_once): i
               for i, shard in enumerate(shards)}
    finished: set[int] = set()
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=REPORT_EVERY_S)
            for ref in ready:
                i = pending.pop(ref)
                for result in _results(ray, ref, shards[i]):
                    on_finish(result)
                finished.add(i)
            if on_progress:
                on_progress(_progress(ray, steps, shards, finished))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if steps is not None:
            ray.kill(steps)


def _results(ray: Any, ref: Any, shard: list[TrainConfig]) -> list[Any]:
    """The shard's results; a shard whose worker died on every attempt is a ShardFailed."""
    try:
        return ray.get(ref)
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError) as e:
        names = ", ".join(run_name(c) for c in shard)
        raise ShardFailed(f"the shard of {names} failed {RETRIES + 1} times "
                          f"({type(e).__name__}); the finished runs are stored, and running "
                          "the same command again resumes") from None


def _progress(ray: Any, steps: Any, shards: list[list[TrainConfig]],
              finished: set[int]) -> Progress:
    reported = ray.get(steps.get.remote())
    done = sum(s[0].steps if i in finished else reported.get(i, 0)
               for i, s in enumerate(shards))
    return Progress(len(finished), len(shards), done, sum(s[0].steps for s in shards))
