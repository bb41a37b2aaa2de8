"""The Ray executor: a sweep's vectorized shards as tasks on a Ray cluster.

- A shard is what the local vectorized executor trains in one go
  (`optimlab.lab.executors.vectorized_plan`): a group of members, the same members in
  the same order, or a run it trains alone (e.g. one with a learning-rate schedule), so
  every run's numbers are the local ones. One task trains one
  shard on `torch.get_num_threads()` CPUs (the driver's `--threads`) and returns all
  its results when it ends.
- The dataset enters Ray's object store once (`ray.put`); each node fetches it once and
  its tasks read it from there.
- Only the driver writes the store: `on_finish` runs in this process as each shard's
  results arrive (`ray.wait`). A killed driver loses only the shards in flight; they
  are still unfinished in the store and run again on resume.
- A worker that dies mid-shard has its shard run again by Ray (`max_retries`). A shard's
  results exist only once its task has returned, so each run reaches `on_finish` once.
- Checkpoints: a task sends its members' checkpoints to a small actor, which keeps each
  shard's latest; the driver takes the new ones between arrivals and stores them, and a
  shard run again (its worker died) goes on from its latest instead of from its start.
- Progress: each task reports its shard's member-steps to a small actor about twice a
  second; the driver reads it between arrivals (shards and steps done, across the
  cluster), never waiting on it. Both actors live on the driver's node: a worker node
  may die mid-sweep, and its shards run again elsewhere.

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
from typing import Any

import torch

from optimlab.lab.executors import (
    Checkpoints,
    OnFinish,
    Progress,
    run_vectorized,
    vectorized_plan,
)
from optimlab.lab.ray_actors import CheckpointSink, Steps
from optimlab.lab.store import Checkpoint, config_key, run_name
from optimlab.train import RunResult, TrainConfig

INSTALL = "pip install 'optimlab[ray]'"
RETRIES = 3  # runs of a shard after its worker died, before the sweep gives up
REPORT_EVERY_S = 0.5  # how often a task reports its steps, and the driver reads them
# Fault injection for the tests: "SHARD:MARKER_FILE" makes the worker of that shard exit
# halfway through its steps, on the first attempt only (the marker records that it did).
KILL_ONCE_ENV = "OPTIMLAB_RAY_KILL_ONCE"


class ShardFailed(RuntimeError):
    """A shard failed on every attempt (its worker kept dying)."""


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
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except ConnectionError as e:
                raise ValueError(f"Invalid Ray address {address!r}: could not join the cluster "
                                 f"({e}); a cluster with token authentication also needs "
                                 "RAY_AUTH_MODE=token and its token here") from None
        else:
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
    return ray.cluster_resources()


class _ShardSteps:
    """Counts a shard's member-steps in its task; tells the progress actor about every
    REPORT_EVERY_S seconds; the test hook's exit lands here, halfway through the shard."""

    def __init__(self, index: int, total: int, steps: Any, kill_once: str | None) -> None:
        self.index, self.total, self.steps, self.kill_once = index, total, steps, kill_once
        self.done, self.last = 0, time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        if self.kill_once and self.done * 2 >= self.total:
            shard, _, marker = self.kill_once.partition(":")
            if int(shard) == self.index and _first_time(marker):
                os._exit(1)
            self.kill_once = None  # checked once per attempt
        if self.steps is not None and time.monotonic() - self.last >= REPORT_EVERY_S:
            self.steps.set.remote(self.index, self.done)
            self.last = time.monotonic()


def _train_shard(index: int, configs: list[TrainConfig], dataset: Any, threads: int,
                 steps: Any, kill_once: str | None, saved: dict[str, tuple[int, bytes]],
                 sink: Any, seconds: float | None, until: int | None = None) -> list[Any]:
    """The Ray task: one shard trained by the vectorized executor (a group, or a run it
    trains alone) from `saved` checkpoints, or from the latest that `sink` (the
    `CheckpointSink` actor) holds when this is a second attempt (None: no checkpoints);
    its RunResults, and with `until` the checkpoints of its runs paused there (returned,
    not sent to `sink`: the driver has them when the task ends)."""
    import ray

    torch.set_num_threads(threads)
    counter = _ShardSteps(index, sum(c.steps for c in configs), steps, kill_once)
    checkpoints = None
    results: list[Any] = []
    if sink is not None:
        saved = {**saved, **ray.get(sink.last.remote(index))}

        def send(items: list[Checkpoint]) -> None:
            sink.put.remote(index, [(config_key(c), (c, step, blob)) for c, step, blob in items])
        checkpoints = Checkpoints(saved, send, seconds).pausing(until, results.extend)
    run_vectorized(configs, dataset, results.append, max_batch=len(configs),
                   say=lambda line: None, on_steps=counter.add,  # the driver said it
                   checkpoints=checkpoints, until=until)
    return results


def _first_time(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def run_ray(configs: Sequence[TrainConfig], dataset: Any, on_finish: OnFinish,
            max_batch: int = 64, *, address: str | None = None,
            on_progress: Callable[[Progress], None] | None = None,
            checkpoints: Checkpoints | None = None,
            on_wait: Callable[[], None] | None = None, until: int | None = None) -> None:
    """Train `configs` as vectorized shards of at most `max_batch` members on the Ray
    cluster (see `connect`); `on_finish` gets each result in this process, shard by
    shard as they end; `on_progress` the counts about every REPORT_EVERY_S seconds;
    `checkpoints.save` the shards' checkpoints as often (runs with saved ones go on), and
    with `until` those of the runs paused there as each shard ends; `on_wait` is called
    as often (the driver's batched commits wait no longer)."""
    ray = require_ray()
    for device in {c.device for c in configs}:
        check_device(device)
    connect(address)
    single, batched = vectorized_plan(
        configs, dataset, max_batch,
        starts=checkpoints.of_kind("member").starts() if checkpoints else None)
    shards = [[c] for c in single] + batched
    threads = torch.get_num_threads()
    task = ray.remote(num_cpus=threads, max_retries=RETRIES)(_train_shard)
    steps: Any = _here(ray, Steps).remote() if on_progress else None
    sink: Any = _here(ray, CheckpointSink).remote() if checkpoints else None
    data = ray.put(dataset)
    kill_once = os.environ.get(KILL_ONCE_ENV)
    pending = {task.remote(i, shard, data, threads, steps, kill_once,
                           _saved(checkpoints, shard), sink,
                           checkpoints.seconds if checkpoints else None, until): i
               for i, shard in enumerate(shards)}
    finished: set[int] = set()
    reported: dict[int, int] = {}  # shard -> step, as the actor last answered
    poll = steps.get.remote() if steps is not None else None
    taken = sink.take.remote() if sink is not None else None
    try:
        while pending:
            if on_progress:
                on_progress(_progress(shards, finished, reported))
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=REPORT_EVERY_S)
            for ref in ready:
                i = pending.pop(ref)
                for result in _results(ray, ref, shards[i]):
                    if isinstance(result, RunResult):
                        on_finish(result)
                    elif checkpoints:  # paused at `until`
                        checkpoints.save([result])
                finished.add(i)
                if sink is not None:
                    sink.forget.remote(i)
            if poll is not None and ray.wait([poll], timeout=0)[0]:  # never wait on it
                reported, poll = ray.get(poll), steps.get.remote()
            if taken is not None and checkpoints and ray.wait([taken], timeout=0)[0]:
                checkpoints.save(ray.get(taken))  # those of finished runs are not kept
                taken = sink.take.remote()
            if on_wait:
                on_wait()
        if on_progress:
            on_progress(_progress(shards, finished, reported))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        for actor in (steps, sink):
            if actor is not None:
                ray.kill(actor)


def _here(ray: Any, cls: type) -> Any:
    """`cls` as an actor on the driver's node: placed on another node, it would die with
    that node and take the sweep with it, while the driver's node outlives every worker."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return ray.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        node, soft=False))(cls)


def _saved(checkpoints: Checkpoints | None, shard: list[TrainConfig]
           ) -> dict[str, tuple[int, bytes]]:
    """The saved checkpoints of the runs of `shard` (a task gets only its own)."""
    keys = {config_key(c) for c in shard}
    return {k: v for k, v in (checkpoints.saved if checkpoints else {}).items() if k in keys}


def _results(ray: Any, ref: Any, shard: list[TrainConfig]) -> list[Any]:
    """The shard's results; a shard whose worker died on every attempt is a ShardFailed."""
    try:
        return ray.get(ref)
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError) as e:
        names = ", ".join(run_name(c) for c in shard)
        raise ShardFailed(f"the shard of {names} lost its worker on each of {RETRIES + 1} "
                          f"attempts ({type(e).__name__}); the finished runs are stored, and "
                          "running the same command again resumes") from None


def _progress(shards: list[list[TrainConfig]], finished: set[int],
              reported: dict[int, int]) -> Progress:
    """Member-steps, as the local executors count them: a shard's members' steps."""
    totals = [sum(c.steps for c in shard) for shard in shards]
    done = sum(total if i in finished else min(reported.get(i, 0), total)
               for i, total in enumerate(totals))
    return Progress(len(finished), len(shards), done, sum(totals))
