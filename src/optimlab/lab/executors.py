"""Executors: how the configurations of a sweep or a comparison are trained. All produce
`RunResult`s. `EXECUTORS` maps each name to its executor: compare and sweep train through
`execute(name, Job(...))`.

- `sequential`: one `optimlab.train.train_run` per configuration (the baseline; runs
  with callbacks of their own, such as compare's `--diagnostics`, always train so);
- `processes`: the same, spread over CPU cores (one torch thread per process);
- `vectorized`: configurations that share dataset, model, steps, batch size and dtype
  train together, K at a time. Parameters are stacked over the K members;
  `optimlab.lab.member_grads` computes all K losses and gradients (the K small models
  become batched matmuls, the backward written out by hand for the built-in models,
  `vmap` of `functional_call` for the others), and `optimlab.optim.batched` updates
  every member with its own hyperparameters ([K] tensors), one optimizer per contiguous
  slice of members. Initial weights and minibatches follow the seeding contract of
  `optimlab.train` (`init_model`, `batch_indices`), evaluation its `evaluate_stacked` (all
  members at once) and records its `summary_record`, so a member's record equals its
  single run's (float64: to ~1e-9; float32: within seed-to-seed noise). A member whose
  minibatch loss turns NaN/Inf is finished as a diverged run, exactly as `train_run`
  does, and dropped.

`train_seconds` of a member is its share of the group's time: each step's wall clock
divided by the members still training.

Every executor checkpoints the runs in flight when given `Checkpoints` (see
`optimlab.train.checkpoint` for what and how often): a single run hands over its own, a
group all its members' at once (one list, stored in one transaction), from worker
threads, processes and Ray tasks to the calling thread, which alone writes them. Given
saved checkpoints, a run goes on from its step to the uninterrupted run's result (clocks
aside): members resumed at one step train as one group, apart from those at another.

What the vectorized executor cannot take it says (one line each, through `say`) and trains
one by one instead: optimizers without a batched update (any `module:Class`), options the
batched update does not vary, learning-rate schedules, and models that are not functional
(buffers updated in place, such as BatchNorm's running statistics, or a forward that
`vmap` cannot run).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch.func import functional_call

from optimlab._dynamo import dynamo_not_imported
from optimlab.lab.member_grads import is_hand_written, member_grads, member_logits, views
from optimlab.lab.store import Checkpoint, config_key
from optimlab.optim import OPTIMIZERS, SPECS, evaluating
from optimlab.optim.batched import BatchedOptimizer, check_members, segment
from optimlab.train import (
    CurvePoint,
    RunResult,
    Timings,
    TrainConfig,
    batch_indices,
    evaluate,
    evaluate_stacked,
    init_model,
    on_device,
    summary_record,
    train_run,
    warm_up,
)
from optimlab.train.checkpoint import (
    Cadence,
    Resume,
    curves_from_state,
    curves_state,
    from_bytes,
    to_bytes,
)

OnFinish = Callable[[RunResult], None]
OnCheckpoint = Callable[[list[Checkpoint]], None]
Say = Callable[[str], None]
# How often a waiting executor looks for checkpoints from its worker processes.
POLL_S = 0.25


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


# Told how many optimizer steps (summed over runs) were just taken; every configuration
# adds up to its `steps` by the time it finishes, diverged or not.
OnSteps = Callable[[int], None]


@dataclass
class Progress:
    """A sweep's work as it goes: shards (groups or runs) and optimizer steps."""

    shards_done: int
    shards: int
    steps_done: int
    steps: int


class Steps:
    """Counts the steps of one executor call for `on_progress`, at most every
    REPORT_EVERY_S seconds (a step of a small model takes well under a millisecond)."""

    REPORT_EVERY_S = 0.25

    def __init__(self, todo: list[TrainConfig], on_progress: Callable[[Any], None] | None):
        self.total, self.on_progress = sum(c.steps for c in todo), on_progress
        self.runs, self.done, self.last = len(todo), 0, 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.on_progress and (now - self.last >= self.REPORT_EVERY_S
                                 or self.done == self.total):
            self.last = now
            self.on_progress(Progress(0, 0, self.done, self.total))


class Checkpoints:
    """The checkpoints of one executor call: `saved`, config key -> (step, bytes) of those
    to go on from; `save`, called with new ones in the calling thread (the store's
    writer); `seconds`, their interval (None: `optimlab.train.checkpoint.every_s()`)."""

    def __init__(self, saved: dict[str, tuple[int, bytes]], save: OnCheckpoint,
                 seconds: float | None = None) -> None:
        self.saved, self.save, self.seconds = saved, save, seconds

    def of_kind(self, kind: str) -> Checkpoints:
        """Those of `kind` only: "run" (`train_run`'s) or "member" (a group's). A run
        resumed by another kind of executor than the one that checkpointed it starts over."""
        return Checkpoints({key: (step, blob) for key, (step, blob) in self.saved.items()
                            if from_bytes(blob).get("kind") == kind}, self.save, self.seconds)

    def starts(self) -> dict[str, int]:
        """config key -> the step its run goes on from (absent: 0)."""
        return {key: step for key, (step, _) in self.saved.items()}

    def resume(self, config: TrainConfig, until: int | None = None) -> Resume:
        """`train_run`'s checkpointing of `config` (pausing at step `until`, see `Resume`)."""
        found = self.saved.get(config_key(config))
        return Resume(found[1] if found else None,
                      lambda step, blob: self.save([(config, step, blob)]), self.seconds, until)

    def pausing(self, until: int | None, paused: OnCheckpoint) -> Checkpoints:
        """These, the checkpoints at step `until` (where the runs pause; None: none)
        handed to `paused` instead of `save`."""
        def save(items: list[Checkpoint]) -> None:
            if rest := [cp for cp in items if cp[1] != until]:
                self.save(rest)
            if at := [cp for cp in items if cp[1] == until]:
                paused(at)
        return Checkpoints(self.saved, save, self.seconds)

    def with_saved(self, checkpoints: Sequence[Checkpoint]) -> Checkpoints:
        """These, with `checkpoints` as the ones to go on from (a later one of a run wins)."""
        return Checkpoints({**self.saved, **{config_key(c): (step, blob)
                                             for c, step, blob in checkpoints}},
                           self.save, self.seconds)


@dataclass
class Rungs:
    """Successive halving's rungs (see `optimlab.lab.halving`): `steps`, those still to
    decide, ascending, each before the runs' last step; `decide(step, checkpoints)`, given
    the checkpoint at `step` of every run still training, the config keys that go on (the
    caller records the others as stopped there)."""

    steps: tuple[int, ...]
    decide: Callable[[int, list[Checkpoint]], set[str]]


def _through_rungs(stage: _Live | _PerRung, rungs: Rungs, checkpoints: Checkpoints | None
                   ) -> None:
    """`stage`'s runs rung by rung: at each rung every run pauses (`stage.train(step, …)`
    returns their checkpoints there), `rungs.decide` is asked, and the runs it keeps
    (`stage.keep`) go on from those; the last stretch to the end."""
    for step in rungs.steps:
        paused = stage.train(step, checkpoints)
        stage.keep(rungs.decide(step, paused))
        if checkpoints:
            checkpoints = checkpoints.with_saved(paused)
    stage.train(None, checkpoints)


class _StepCounter:
    """A train_run callback telling `on_steps` about every step."""

    def __init__(self, on_steps: OnSteps) -> None:
        self.on_steps, self.taken = on_steps, 0

    def on_step_end(self, step: int, model: Any, optimizer: Any) -> None:
        self.taken += 1
        self.on_steps(1)


# A run's callbacks (see `optimlab.train.loop`): progress bars, diagnostics recorders.
CallbacksFor = Callable[[TrainConfig], Sequence[Any]]


def run_sequential(configs: Sequence[TrainConfig], dataset: Any, on_finish: OnFinish,
                   on_steps: OnSteps | None = None,
                   checkpoints: Checkpoints | None = None,
                   callbacks: CallbacksFor | None = None, until: int | None = None) -> None:
    """One `train_run` after another, in the given order, each optimizer warmed up once
    first (`warm_up`: one-time costs are not charged to its first timed run). A run whose
    `callbacks` return results (recorders) neither takes nor resumes a checkpoint: their
    state is not in it. `until`: every run pauses at that step, its checkpoint there
    handed to `checkpoints.save` (see `Resume`)."""
    first: dict[str, TrainConfig] = {}
    for config in configs:
        first.setdefault(config.label, config)
    for config in first.values():
        warm_up(config, dataset)
    for config in configs:
        cbs = list(callbacks(config)) if callbacks else []
        counter = _StepCounter(on_steps) if on_steps else None
        recorded = any(hasattr(cb, "result") for cb in cbs)
        resume = checkpoints.resume(config, until) if checkpoints and not recorded else None
        result = train_run(config, dataset, callbacks=[*cbs, *([counter] if counter else [])],
                           resume=resume)
        if result is None:  # paused at `until`
            continue
        if on_steps and counter:
            on_steps(config.steps - counter.taken)  # a diverged run's steps not taken
        on_finish(result)


_WORKER_DATASET: Any = None
_WORKER_SAVES: Any = None  # the queue of checkpoint lists to the parent (None: none taken)


def _init_worker(dataset: Any, saves: Any) -> None:
    global _WORKER_DATASET, _WORKER_SAVES
    torch.set_num_threads(1)  # the cores are shared out between processes instead
    # Ctrl-C reaches the terminal's whole process group: the parent alone stops, says what
    # was kept and ends the pool (each worker printed a traceback otherwise)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_DATASET, _WORKER_SAVES = dataset, saves


# A worker's task: the configuration, its saved checkpoint (or None), the interval, the
# step to pause at (or None).
_Task = tuple[TrainConfig, "tuple[int, bytes] | None", "float | None", "int | None"]


def _train_in_worker(task: _Task) -> RunResult | Checkpoint:
    """The run's result, or its checkpoint where it paused (returned with the result
    rather than queued: the parent then has it when the run's task ends)."""
    config, saved, seconds, until = task
    if _WORKER_SAVES is None:
        return cast(RunResult, train_run(config, _WORKER_DATASET))
    paused: list[Checkpoint] = []
    queued = Checkpoints({config_key(config): saved} if saved else {}, _WORKER_SAVES.put,
                         seconds)
    result = train_run(config, _WORKER_DATASET,
                       resume=queued.pausing(until, paused.extend).resume(config, until))
    return result if result is not None else paused[-1]


def run_processes(configs: Sequence[TrainConfig], dataset: Any, on_finish: OnFinish,
                  workers: int | None = None, on_steps: OnSteps | None = None,
                  checkpoints: Checkpoints | None = None, until: int | None = None) -> None:
    """`train_run`s in `workers` processes (default: one per CPU core); results are
    handed to `on_finish` in this process as they arrive, in completion order, and the
    workers' checkpoints to `checkpoints.save` while it waits (`until`: as
    `run_sequential`'s)."""
    n = max(1, min(workers or os.cpu_count() or 1, len(configs)))
    # spawn, not fork: a forked child can deadlock on the parent's OpenMP thread pool
    context = multiprocessing.get_context("spawn")
    saves = context.Queue() if checkpoints else None
    tasks = [(c, checkpoints.saved.get(config_key(c)), checkpoints.seconds, until)
             if checkpoints else (c, None, None, None) for c in configs]
    with context.Pool(n, _init_worker, (dataset, saves)) as pool:
        results = pool.imap_unordered(_train_in_worker, tasks)
        while (result := _next_result(results, saves, checkpoints)) is not None:
            if not isinstance(result, RunResult):  # paused at `until`
                if checkpoints:
                    checkpoints.save([result])
                continue
            if on_steps:
                on_steps(result.config.steps)
            on_finish(result)


def _next_result(results: Any, saves: Any, checkpoints: Checkpoints | None
                 ) -> RunResult | Checkpoint | None:
    """The next result from the pool (None: there are no more); meanwhile, at least every
    POLL_S seconds and before a result, the checkpoints the workers queued go to
    `checkpoints.save`."""
    while True:
        try:
            result: RunResult | Checkpoint = results.next(timeout=POLL_S)
            return result
        except multiprocessing.TimeoutError:
            pass
        except StopIteration:
            return None
        finally:
            arrived = []
            while saves is not None:
                try:
                    arrived += saves.get_nowait()
                except queue.Empty:
                    break
            if arrived and checkpoints is not None:
                checkpoints.save(arrived)


def group_key(config: TrainConfig) -> tuple[Any, ...]:
    """Configurations with the same key can train as members of one group."""
    return (config.dataset, config.model, config.steps, config.batch_size, config.eval_every,
            config.dtype, config.device, config.task)


def groups(configs: Sequence[TrainConfig], max_batch: int,
           starts: dict[str, int] | None = None) -> list[list[TrainConfig]]:
    """Compatible configurations in chunks of at most `max_batch`, sorted by optimizer
    within a chunk (each optimizer then updates one contiguous slice of members); those
    resumed at a step (`starts`: config key -> step) only with others at that step."""
    by_key: dict[tuple[Any, ...], list[TrainConfig]] = {}
    for c in configs:
        start = starts.get(config_key(c), 0) if starts else 0
        by_key.setdefault((*group_key(c), start), []).append(c)
    out = []
    for members in by_key.values():
        for i in range(0, len(members), max_batch):
            out.append(sorted(members[i:i + max_batch],
                              key=lambda c: segment(c.optimizer, c.hyperparameters)))
    return out


def member_refusal(config: TrainConfig) -> str | None:
    """Why `config` cannot be a member of a vectorized group (None: it can)."""
    if config.schedule != "constant":
        return f"schedule {config.schedule!r} (the batched η is fixed)"
    if config.optimizer not in OPTIMIZERS:
        return f"{config.optimizer} has no batched update"
    try:
        with dynamo_not_imported():  # the check builds an optimizer that never steps
            check_members(config.optimizer, [config.hyperparameters])
    except ValueError as e:
        return str(e)
    return None


def batchable(config: TrainConfig) -> bool:
    """Whether `config` can be a member of a group (see `member_refusal`)."""
    return member_refusal(config) is None


def model_refusal(config: TrainConfig, dataset: Any) -> str | None:
    """Why `config`'s model cannot train vectorized (None: it can). A model is functional
    when a training-mode forward leaves its buffers unchanged and K stacked copies of its
    parameters run through `member_grads` (`vmap` of `functional_call`)."""
    data = on_device(dataset, config.device, config.torch_dtype)
    module = init_model(config.model, data, config.seed, config.torch_dtype).to(config.device)
    module.train()
    before = {n: b.clone() for n, b in module.named_buffers()}
    with torch.no_grad():
        module(data.x_train[:2])
    changed = [n for n, b in module.named_buffers() if not torch.equal(b, before[n])]
    if changed:
        return (f"model {config.model} updates its buffers in place ({', '.join(changed[:3])}, "
                "e.g. BatchNorm running statistics)")
    for n, b in before.items():
        module.get_buffer(n).copy_(b)
    flat = torch.cat([p.detach().reshape(1, -1) for p in module.parameters()], 1)
    params = views(flat, [(n, p.shape) for n, p in module.named_parameters()])
    try:
        member_grads(module, task=config.task)(params, data.x_train[None, :2],
                                               data.y_train[None, :2], torch.empty_like(flat))
    except Exception as e:  # vmap refused the forward: say why, in one line
        return f"model {config.model} does not run under vmap ({' '.join(str(e).split())[:200]})"
    return None


def run_vectorized(configs: Sequence[TrainConfig], dataset: Any, on_finish: OnFinish,
                   max_batch: int = 64, say: Say = _stderr,
                   on_steps: OnSteps | None = None,
                   checkpoints: Checkpoints | None = None, until: int | None = None,
                   rungs: Rungs | None = None) -> None:
    """Train compatible configurations together, `max_batch` members at a time. What the
    batched path cannot take is said (`say`) and trained by its own `train_run`.
    `until`: every run pauses at that step, its checkpoint there handed to
    `checkpoints.save`. `rungs`: at each rung every group pauses, the decision is asked
    for, and each group goes on with the members it keeps only (`Group.keep`: its
    stacked parameters, optimizer state and hyperparameters shrink to them).

    With torch set to several threads (its default: one per core), the groups train side
    by side instead, one group per thread and one torch thread each (`_side_by_side`): at
    these sizes torch's ops gain little from a second thread, and two groups at once
    keep both cores on their own products. A member's arithmetic does not depend on the
    group it trains in, so the results are those of one group."""
    of_members = checkpoints.of_kind("member") if checkpoints else None
    saved = of_members.saved if of_members else {}
    single, batched = vectorized_plan(configs, dataset, max_batch, say,
                                      of_members.starts() if of_members else None)
    threads = torch.get_num_threads()
    live = _Live(*_groups(batched, dataset, saved, threads), single, threads, dataset,
                 on_finish, on_steps)
    if rungs is not None:
        _through_rungs(live, rungs, checkpoints)
        return
    run_sequential(single, dataset, on_finish, on_steps, checkpoints, until=until)
    held = live.train_groups(until, checkpoints)
    if until is not None and checkpoints:  # paused at `until`: the caller goes on from these
        checkpoints.save(held)


@dataclass
class _Live:
    """The vectorized executor's runs: its groups, kept in memory from rung to rung (each
    compacted to the members that go on, `Group.keep`), and the runs it trains one by one."""

    groups: list[Group]
    side: bool  # the groups train side by side (`_side_by_side`)
    single: list[TrainConfig]
    threads: int
    dataset: Any
    on_finish: OnFinish
    on_steps: OnSteps | None

    def train(self, until: int | None, checkpoints: Checkpoints | None) -> list[Checkpoint]:
        paused: dict[str, Checkpoint] = {}
        run_sequential(self.single, self.dataset, self.on_finish, self.on_steps,
                       _pausing(checkpoints, paused, until), until=until)
        paused |= {config_key(c): (c, t, b) for c, t, b in self.train_groups(until, checkpoints)}
        return list(paused.values())

    def train_groups(self, until: int | None, checkpoints: Checkpoints | None
                     ) -> list[Checkpoint]:
        """The groups to step `until` (None: to the end); their members' checkpoints there,
        held here (not handed to `checkpoints.save`)."""
        if self.side:
            _side_by_side(self.groups, self.on_finish, self.on_steps, self.threads,
                          checkpoints, until)
        else:
            for group in self.groups:
                group.run(self.on_finish, self.on_steps, checkpoints=checkpoints, until=until)
        return [] if until is None else [cp for g in self.groups for cp in g.checkpoints(until)]

    def keep(self, keys: set[str]) -> None:
        self.groups = [g for g in self.groups if g.keep(keys)]
        self.single = [c for c in self.single if config_key(c) in keys]


def _groups(batched: list[list[TrainConfig]], dataset: Any,
            saved: dict[str, tuple[int, bytes]], threads: int) -> tuple[list[Group], bool]:
    """The groups to train, and whether they train side by side (`_side_by_side`)."""
    cut = _shares(batched, threads)
    if threads > 1 and len(cut) > 1:
        # built here, one after another: a model's initial weights come from torch's
        # global generator (`init_model`)
        shares = [Group(members, dataset, saved) for members in cut]
        if all(g.hand_written for g in shares):
            return shares, True
    # one thread, or a model under vmap: its groups train one after another, uncut
    return [Group(members, dataset, saved) for members in batched], False


def _pausing(checkpoints: Checkpoints | None, paused: dict[str, Checkpoint],
             step: int | None) -> Checkpoints | None:
    """`checkpoints`, also keeping in `paused` (config key -> checkpoint) those at `step`
    (None: `checkpoints` as they are)."""
    if checkpoints is None or step is None:
        return checkpoints

    def keep(items: list[Checkpoint]) -> None:
        paused.update((config_key(c), (c, t, b)) for c, t, b in items)
        checkpoints.save(items)
    return checkpoints.pausing(step, keep)


def side_by_side(members: int, max_batch: int, threads: int) -> int:
    """How many groups the vectorized executor trains at once for `members` compatible
    configurations of a model with a written-out backward, on `threads` torch threads."""
    if threads <= 1:
        return 1
    sizes = [min(max_batch, members - i) for i in range(0, members, max_batch)]
    return min(threads, len(_shares([[None] * n for n in sizes], threads)))


def _shares(batched: list[list[Any]], threads: int) -> list[list[Any]]:
    """The groups, cut so that `threads` of them can train at once: a group larger than
    its share of all the members is cut into consecutive parts (each optimizer's members
    stay contiguous within a part, as `groups` sorted them)."""
    total = sum(map(len, batched))
    share = max(1, math.ceil(total / threads))
    return [members[i:i + share] for members in batched
            for i in range(0, len(members), share)]


def _side_by_side(shares: list[Group], on_finish: OnFinish, on_steps: OnSteps | None,
                  threads: int, checkpoints: Checkpoints | None = None,
                  until: int | None = None) -> None:
    """Train the groups `shares` in `threads` threads, torch on one thread meanwhile (only
    groups whose gradients are written out: `vmap` of a user's model might draw from
    torch's global generator, which the threads would share). The results, step counts
    and checkpoints are handed to `on_finish`, `on_steps` and `checkpoints.save` in this
    (the calling) thread, as they arrive, so that the store is written from one thread;
    an error or an interrupt here stops every group after its current step. `until`: each
    group pauses there (see `Group.run`)."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    todo: queue.Queue[Group] = queue.Queue()
    for group in shares:
        todo.put(group)
    stop = threading.Event()
    # the groups' checkpoints pass through `events`; their cadence and interval are kept
    routed = Checkpoints(checkpoints.saved, lambda items: events.put(("checkpoint", items)),
                         checkpoints.seconds) if checkpoints else None

    def work() -> None:
        try:
            while not stop.is_set():
                try:
                    group = todo.get_nowait()
                except queue.Empty:
                    return
                group.run(lambda r: events.put(("finish", r)),
                          lambda n: events.put(("steps", n)), stop, routed, until)
        except BaseException as e:  # noqa: BLE001  # raised again in the calling thread
            events.put(("error", e))
        finally:
            events.put(("done", None))

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    workers = [threading.Thread(target=work, name=f"optimlab-group-{i}", daemon=True)
               for i in range(min(threads, len(shares)))]
    try:
        for w in workers:
            w.start()
        running = len(workers)
        while running:
            kind, value = events.get()
            if kind == "finish":
                on_finish(value)
            elif kind == "steps" and on_steps:
                on_steps(value)
            elif kind == "checkpoint" and checkpoints:
                checkpoints.save(value)
            elif kind == "error":
                raise value
            elif kind == "done":
                running -= 1
    finally:
        stop.set()
        for w in workers:
            w.join()
        torch.set_num_threads(previous)


@dataclass
class Job:
    """One executor call: the runs, where results, step counts and checkpoints go."""

    configs: Sequence[TrainConfig]
    dataset: Any
    on_finish: OnFinish
    on_steps: OnSteps | None = None
    on_progress: Callable[[Any], None] | None = None  # the Ray executor's counts
    checkpoints: Checkpoints | None = None
    max_batch: int = 64  # members trained together (vectorized, Ray shards)
    say: Say | None = None  # what the vectorized executor cannot take (None: stderr)
    callbacks: CallbacksFor | None = None  # per run; such runs train one by one
    on_wait: Callable[[], None] | None = None  # Ray's driver, between arrivals (~2 per second)
    until: int | None = None  # every run pauses at this step (see `Resume`)
    rungs: Rungs | None = None  # successive halving's decisions (see `execute`)


def _ray(job: Job) -> None:
    from optimlab.lab.ray_executor import run_ray  # the optional extra

    run_ray(job.configs, job.dataset, job.on_finish, job.max_batch,
            on_progress=job.on_progress, checkpoints=job.checkpoints, on_wait=job.on_wait,
            until=job.until)


# The executors by name: compare and sweep (`--executor`) train through this table.
EXECUTORS: dict[str, Callable[[Job], None]] = {
    "vectorized": lambda job: run_vectorized(job.configs, job.dataset, job.on_finish,
                                             job.max_batch, job.say or _stderr, job.on_steps,
                                             job.checkpoints, job.until, job.rungs),
    "sequential": lambda job: run_sequential(job.configs, job.dataset, job.on_finish,
                                             job.on_steps, job.checkpoints, job.callbacks,
                                             job.until),
    "processes": lambda job: run_processes(job.configs, job.dataset, job.on_finish,
                                           on_steps=job.on_steps, checkpoints=job.checkpoints,
                                           until=job.until),
    "ray": _ray,
}


def execute(executor: str, job: Job) -> None:
    """Train `job` with the executor named `executor`; runs given callbacks need a training
    loop of their own and train one by one (`run_sequential`) whatever the executor. With
    `job.rungs`, the vectorized executor decides inside its live groups; the others train
    rung by rung, one call per rung (`_PerRung`)."""
    if executor not in EXECUTORS:
        raise ValueError(f"Invalid executor: {executor!r}; allowed: {', '.join(EXECUTORS)}")
    name = "sequential" if job.callbacks else executor
    if job.rungs is not None and name != "vectorized":
        assert job.checkpoints is not None  # pausing needs them
        _through_rungs(_PerRung(EXECUTORS[name], job), job.rungs, job.checkpoints)
    else:
        EXECUTORS[name](job)


@dataclass
class _PerRung:
    """The runs of `job` through the rungs as one call of `executor` per stretch, each run
    going on from its checkpoint at the last rung."""

    executor: Callable[[Job], None]
    job: Job

    def train(self, until: int | None, checkpoints: Checkpoints | None) -> list[Checkpoint]:
        paused: dict[str, Checkpoint] = {}
        if self.job.configs:
            self.executor(dataclasses.replace(self.job, rungs=None, until=until,
                                              checkpoints=_pausing(checkpoints, paused, until)))
        return list(paused.values())

    def keep(self, keys: set[str]) -> None:
        self.job = dataclasses.replace(
            self.job, configs=[c for c in self.job.configs if config_key(c) in keys])


def vectorized_plan(configs: Sequence[TrainConfig], dataset: Any, max_batch: int,
                    say: Say = _stderr, starts: dict[str, int] | None = None
                    ) -> tuple[list[TrainConfig], list[list[TrainConfig]]]:
    """How the vectorized executor trains `configs`: (the runs it trains one by one, the
    groups it trains together, see `groups` for `starts`); what the batched path cannot
    take is said (`say`)."""
    single: list[TrainConfig] = []
    reasons: dict[str, list[str]] = {}
    for c in configs:
        why = member_refusal(c)
        if why is not None:
            single.append(c)
            reasons.setdefault(why, []).append(c.label)
    batched = [c for c in configs if c not in single]
    for model in dict.fromkeys(c.model for c in batched):
        first = next(c for c in batched if c.model == model)
        why = model_refusal(first, dataset)
        if why is not None:
            moved = [c for c in batched if c.model == model]
            single += moved
            reasons.setdefault(why, []).extend(c.label for c in moved)
            batched = [c for c in batched if c.model != model]
    for why, labels in reasons.items():
        say(f"vectorized executor: {why}; {len(labels)} run(s) of "
            f"{', '.join(dict.fromkeys(labels))} train one by one instead")
    return single, groups(batched, max_batch, starts)


class Group:
    """K configurations training in lockstep; `alive[i]` is the config of stacked row i."""

    def __init__(self, configs: list[TrainConfig], dataset: Any,
                 saved: dict[str, tuple[int, bytes]] | None = None) -> None:
        """`saved`: config key -> (step, bytes) of checkpoints; the members go on from
        theirs (all at one step, see `groups`), or start at step 0 when they have none."""
        c0 = configs[0]
        self.configs, self.data = configs, on_device(dataset, c0.device, c0.torch_dtype)
        inits = {s: init_model(c0.model, self.data, s, c0.torch_dtype).to(c0.device)
                 for s in sorted({c.seed for c in configs})}
        self.module = inits[c0.seed]
        # All members' parameters in one [K, P] tensor: the optimizer's every line is one
        # op over all of them; `params` holds per-tensor views of it for functional_call.
        self.shapes = [(n, p.shape) for n, p in self.module.named_parameters()]
        self.flat = torch.stack([torch.cat([p.detach().reshape(-1) for p in
                                            inits[c.seed].parameters()]) for c in configs])
        self._views()
        self.grad_fn = member_grads(self.module, task=c0.task)
        self.hand_written = is_hand_written(self.module, c0.task)
        self.alive = list(range(len(configs)))
        self.curves: list[list[CurvePoint]] = [[] for _ in configs]
        self.train_s, self.opt_s = [0.0] * len(configs), [0.0] * len(configs)
        self.done, self.last_eval = [0] * len(configs), [-1] * len(configs)
        self._make_optimizers()
        found = [saved.get(config_key(c)) for c in configs] if saved else []
        self.start = self._restore([from_bytes(f[1]) for f in found if f is not None])
        seeds = list(inits)
        self.batches = [batch_indices(len(self.data.y_train), c0.batch_size, s, self.start)
                        for s in seeds]
        self.seed_row = torch.tensor([seeds.index(c.seed) for c in configs])
        self.on_steps: OnSteps | None = None
        self.at, self.begun = self.start, False  # the last step taken; whether run began

    def _restore(self, states: list[dict[str, Any]]) -> int:
        """Every member as its checkpoint `states[i]` left it; the step they go on from."""
        if not states:
            return 0
        if len(states) != len(self.configs) or len({s["step"] for s in states}) != 1:
            raise ValueError("Invalid group: its members hold checkpoints of several steps")
        for i, state in enumerate(states):
            self.flat[i] = state["params"]
            self.curves[i] = curves_from_state(state["curves"])
            self.train_s[i], self.opt_s[i] = state["train_s"], state["opt_s"]
            self.done[i], self.last_eval[i] = state["step"], state["last_eval"]
        for opt, a, b in self.segments:
            opt.t = states[a]["t"]
            names = dict.fromkeys(k for s in states[a:b] for k in s["optimizer"])
            opt.state = {k: _stacked([s["optimizer"].get(k) for s in states[a:b]])
                         for k in names}
        return int(states[0]["step"])

    def checkpoints(self, t: int) -> list[Checkpoint]:
        """Each member's checkpoint after step `t` (copies: training goes on meanwhile)."""
        out = []
        for opt, a, b in self.segments:
            for row in range(a, b):
                i = self.alive[row]
                state = {"kind": "member", "step": t, "params": self.flat[row].clone(),
                         "t": opt.t,
                         "optimizer": {k: [None if x is None else x[row - a].clone()
                                           for x in xs] for k, xs in opt.state.items()},
                         "curves": curves_state(self.curves[i]), "train_s": self.train_s[i],
                         "opt_s": self.opt_s[i], "last_eval": self.last_eval[i]}
                out.append((self.configs[i], t, to_bytes(state)))
        return out

    def _make_optimizers(self) -> None:
        """One BatchedOptimizer per segment (optimizer and shared options), over its
        contiguous slice of rows."""
        self.segments: list[tuple[BatchedOptimizer, int, int]] = []
        start = 0
        for (name, *_), rows in itertools.groupby(
                self.alive, key=lambda i: segment(self.configs[i].optimizer,
                                                  self.configs[i].hyperparameters)):
            n = len(list(rows))
            members = [self.configs[i].hyperparameters for i in self.alive[start:start + n]]
            with dynamo_not_imported():  # its check of each member builds a torch Optimizer
                opt = BatchedOptimizer(name, self._shaped(name, self.flat[start:start + n]),
                                       members)
            self.segments.append((opt, start, start + n))
            start += n

    def _views(self) -> None:
        """`params`: name -> [K, *shape] view of `flat`, the [K, P] gradient buffer and the
        members' batched forward for evaluation (all rebuilt when rows are dropped)."""
        self.params = views(self.flat, self.shapes)
        self.grads = torch.empty_like(self.flat)
        self.logits = member_logits(self.module, len(self.flat))

    def _shaped(self, name: str, rows: torch.Tensor) -> list[torch.Tensor]:
        """Rows of a [K, P] tensor as optimizer `name` steps them: whole, for an element-wise
        update (each line one large op); as the parameters, [K, *shape] each, for an update
        that is not element-wise (Muon's matrices)."""
        if SPECS[name].formula is not None:
            return [rows]
        return list(views(rows, self.shapes).values())

    def _member_forward(self, row: int) -> Callable[[torch.Tensor], torch.Tensor]:
        member = {n: p[row] for n, p in self.params.items()}
        return lambda x: functional_call(self.module, member, (x,))

    def _rows(self) -> list[int]:
        return list(range(len(self.alive)))

    def _evaluate(self, rows: list[int], step: int, diverged: bool = False) -> None:
        """Evaluate `rows` at `step`, every member at once (`evaluate_stacked`; a member's
        results do not depend on how many train with it). A member that just diverged is
        evaluated by its own forward, as `train_run` evaluates it: near overflow another
        summation order can turn a logit into Inf."""
        with ExitStack() as stack:  # at the point each is evaluated at (`eval()`)
            for opt, _, _ in self.segments:
                stack.enter_context(evaluating(opt))
            results = self._results(rows, diverged)
        for row, metrics in zip(rows, results, strict=True):
            i = self.alive[row]
            for split, values in metrics.items():
                for metric, value in values.items():
                    self.curves[i].append(CurvePoint(step, self.train_s[i], split, metric,
                                                     value))
            self.last_eval[i] = step

    def _results(self, rows: list[int], diverged: bool) -> list[dict[str, dict[str, float]]]:
        """The metrics of `rows`, split -> metric -> value, one dict per row."""
        task = self.configs[self.alive[rows[0]]].task if rows else "classification"
        if task == "classification" and not diverged:
            index = None if len(rows) == len(self.alive) else torch.tensor(rows)
            params = self.params if index is None else {n: p[index] for n, p in
                                                        self.params.items()}
            return evaluate_stacked(lambda x: self.logits(params, x), len(rows), self.data)
        return [evaluate(self._member_forward(row), self.data, task) for row in rows]

    def _finish(self, row: int, on_finish: OnFinish) -> None:
        """Final evaluation (unless just done) and the record, as `train_run` makes them."""
        i = self.alive[row]
        if self.last_eval[i] != self.done[i]:
            self._evaluate([row], self.done[i], diverged=True)  # the end is evaluated in run
        config = self.configs[i]
        if self.on_steps and config.steps > self.done[i]:
            self.on_steps(config.steps - self.done[i])  # the steps a divergence skipped
        timings = Timings(self.train_s[i], self.opt_s[i])
        on_finish(RunResult(config, summary_record(config, self.curves[i], timings),
                            self.curves[i]))

    def _drop(self, rows: list[int], grads: torch.Tensor) -> torch.Tensor:
        """Remove stacked rows `rows` (parameters, gradients, optimizer state)."""
        keep = [r for r in range(len(self.alive)) if r not in rows]
        index = torch.tensor(keep, dtype=torch.long)
        self.flat = self.flat[index]
        self._views()
        segments, start = [], 0
        for opt, a, b in self.segments:
            local = [r - a for r in keep if a <= r < b]
            if local:
                opt.select(torch.tensor(local),
                           self._shaped(opt.name, self.flat[start:start + len(local)]))
                segments.append((opt, start, start + len(local)))
                start += len(local)
        self.segments, self.alive = segments, [self.alive[r] for r in keep]
        return grads[index]

    def keep(self, keys: set[str]) -> bool:
        """Compact to the members whose config keys are in `keys` (the others stop, not
        finished here: their records are the caller's); whether any member is left."""
        rows = [row for row, i in enumerate(self.alive) if config_key(self.configs[i]) not in keys]
        if len(rows) == len(self.alive):
            self.alive = []
        elif rows:
            self._drop(rows, self.grads)
        return bool(self.alive)

    def _charge(self, seconds: float, opt_seconds: float = 0.0) -> None:
        """Share a step's wall clock among the members that took it."""
        for i in self.alive:
            self.train_s[i] += seconds / len(self.alive)
            self.opt_s[i] += opt_seconds / len(self.alive)

    def minibatches(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's x [K, B, …] and y [K, B]: each member's seed's next minibatch. With
        one seed, one gathered minibatch expanded over the K rows (no copies)."""
        k = len(self.alive)
        if len(self.batches) == 1:
            idx = next(self.batches[0]).to(self.data.x_train.device)
            x, y = self.data.x_train[idx], self.data.y_train[idx]
            return x.expand(k, *x.shape), y.expand(k, *y.shape)
        idx = torch.stack([next(b) for b in self.batches])[self.seed_row[self.alive]]
        idx = idx.to(self.data.x_train.device)
        return self.data.x_train[idx], self.data.y_train[idx]

    def step(self, t: int, on_finish: OnFinish) -> None:
        t0 = time.perf_counter()
        x, y = self.minibatches()
        losses = self.grad_fn(self.params, x, y, self.grads)
        grads = self.grads
        values = losses.tolist()
        self._charge(time.perf_counter() - t0)
        bad = [row for row, v in enumerate(values) if not math.isfinite(v)]
        for row in bad:  # as train_run: record the loss, stop before the update
            i = self.alive[row]
            self.curves[i].append(CurvePoint(t, self.train_s[i], "batch", "loss", values[row]))
            self._finish(row, on_finish)
        if bad:
            grads = self._drop(bad, grads)
            values = [v for row, v in enumerate(values) if row not in bad]
        t1 = time.perf_counter()
        for opt, a, b in self.segments:
            opt.step(self._shaped(opt.name, grads[a:b]))
        t2 = time.perf_counter()
        self._charge(t2 - t1, t2 - t1)
        for row, i in enumerate(self.alive):
            self.curves[i].append(CurvePoint(t, self.train_s[i], "batch", "loss", values[row]))
            self.done[i] = t

    def run(self, on_finish: OnFinish, on_steps: OnSteps | None = None,
            stop: threading.Event | None = None,
            checkpoints: Checkpoints | None = None, until: int | None = None) -> None:
        """Train every member to the end (or its divergence); `on_finish` gets each result,
        `on_steps` the member-steps taken (a diverged member's remaining ones at its end;
        a resumed group's earlier ones first), `checkpoints.save` the members' checkpoints
        on their cadence. `stop`, once set, ends the run after the current step, finishing
        no member. `until`: pause after that step instead, finishing no member; a later
        call goes on from there."""
        config = self.configs[0]
        self.on_steps = on_steps
        if not self.begun and self.start == 0:
            self._evaluate(self._rows(), 0)
        elif not self.begun and on_steps:
            on_steps(self.start * len(self.alive))
        self.begun = True
        cadence = Cadence(config.steps, self.at, checkpoints.seconds) if checkpoints else None
        for t in range(self.at + 1, (until or config.steps) + 1):
            if not self.alive:
                break
            if stop is not None and stop.is_set():
                return
            self.step(t, on_finish)
            self.at = t
            if on_steps:
                on_steps(len(self.alive))
            if t % config.eval_every == 0:
                self._evaluate(self._rows(), t)
            if checkpoints and cadence and self.alive and cadence.due(t):
                checkpoints.save(self.checkpoints(t))
        if until is not None:
            return
        if self.alive and config.steps % config.eval_every != 0:
            self._evaluate(self._rows(), self.done[self.alive[0]])
        for row in range(len(self.alive)):
            self._finish(row, on_finish)


def _stacked(rows: list[list[torch.Tensor | None] | None]) -> list[torch.Tensor | None]:
    """The members' rows of one optimizer state, stacked per tensor. A member without it
    (its old group had the term off for every member: SGD's buffer at μ = 0, whose value
    that μ multiplies away) gets zeros."""
    width = max(len(r) for r in rows if r is not None)
    out: list[torch.Tensor | None] = []
    for j in range(width):
        given = [r[j] if r is not None else None for r in rows]
        like = next((x for x in given if x is not None), None)
        out.append(None if like is None else torch.stack(
            [x if x is not None else torch.zeros_like(like) for x in given]))
    return out
