"""One training run: the loop, its clocks, and the callbacks hook.

Callbacks contract (the opt-in diagnostics recorders implement it): a callback is
any object with, all optional,
- `on_step_end(step: int, model, optimizer)`: called after update `step` (1-based);
- `on_curves(curves: list[CurvePoint])`: called after every step (its evaluation
  included) and once at the end with every point so far; live loggers write the new ones;
- `result() -> dict`: JSON-able, read once after the run and stored in
  `RunResult.extras[name]`; the lab writes all of them to `DIR/diagnostics.json`;
- `name: str`: the key in `extras` (default: the class name).
Time spent in callbacks, like evaluation, is excluded from `train_seconds`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from optimlab.optim import evaluating, modes, optimizer_class
from optimlab.train import schedules
from optimlab.train.checkpoint import (
    Cadence,
    Resume,
    curves_from_state,
    curves_state,
    from_bytes,
    to_bytes,
)
from optimlab.train.config import TrainConfig
from optimlab.train.evaluation import evaluate, task_loss
from optimlab.train.record import CurvePoint, RunResult, Timings, summary_record
from optimlab.train.seeding import batch_indices, init_model


def on_device(dataset: Any, device: str, dtype: torch.dtype) -> Any:
    """The dataset with inputs in `dtype` and every tensor on `device` (class labels stay
    int64; regression targets take `dtype`)."""
    moved = {}
    for split in ("train", "val", "test"):
        moved[f"x_{split}"] = getattr(dataset, f"x_{split}").to(device=device, dtype=dtype)
        y = getattr(dataset, f"y_{split}")
        moved[f"y_{split}"] = y.to(device=device, dtype=dtype if y.is_floating_point() else None)
    return dataclasses.replace(dataset, **moved)


def _syncer(device: str) -> Callable[[], None]:
    """CUDA runs asynchronously: clocks are read only after the device has finished."""
    if device.startswith("cuda"):
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, sync: Callable[[], None], task: str
                ) -> tuple[float, float, float]:
    """(minibatch loss, step seconds, optimizer seconds); no update when the loss is NaN/Inf."""
    t0 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = task_loss(task, model(x), y)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value, time.perf_counter() - t0, 0.0
    loss.backward()
    sync()
    t1 = time.perf_counter()
    optimizer.step()
    sync()
    t2 = time.perf_counter()
    return value, t2 - t0, t2 - t1


def _record_eval(curves: list[CurvePoint], model: nn.Module, optimizer: Any, data: Any,
                 step: int, seconds: float, task: str) -> None:
    """Evaluate with the optimizer in its eval mode, if it has one, then back to train."""
    with evaluating(optimizer):
        results = evaluate(model, data, task)
    for split, metrics in results.items():
        for metric, value in metrics.items():
            curves.append(CurvePoint(step, seconds, split, metric, value))


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """`config.optimizer`'s class (built-in or module:Class) over the model's parameters,
    in its train mode where it has one (schedulefree's refuses a step before `train()`)."""
    optimizer = optimizer_class(config.optimizer)(model.parameters(), **config.hyperparameters)
    found = modes(optimizer)
    if found is not None:
        _, to_train = found
        to_train()
    return optimizer


def _check_logits(out: torch.Tensor, n: int, dataset: Any) -> None:
    """Cross-entropy takes logits of any width: more outputs than classes train on logits
    no label names, fewer fail mid-run at the first larger label."""
    classes = dataset.num_classes
    if out.ndim != 2 or out.shape[1] != classes:
        got = (f"{out.shape[1]} output{'' if out.shape[1] == 1 else 's'} per example"
               if out.ndim == 2 else f"an output of shape {tuple(out.shape)} for {n} examples")
        raise ValueError(f"it gives {got} but {dataset.name} has "
                         f"{classes} classes (labels 0..{classes - 1}); allowed: a model with "
                         f"{classes} outputs")


def check_model(config: TrainConfig, dataset: Any) -> None:
    """Build `config`'s model and run its loss on two training examples: a model that does
    not fit the data (its inputs, or the number of classes) fails here, as a one-line
    ValueError, before anything trains."""
    if config.device.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Invalid device: {config.device!r}: no CUDA device here; "
                         "allowed: cpu")
    data = on_device(dataset, config.device, config.torch_dtype)
    try:
        model = init_model(config.model, data, config.seed, config.torch_dtype)
        model.to(config.device)
        x, y = data.x_train[:2], data.y_train[:2]
        out = model(x)
        if config.task == "classification":
            _check_logits(out, len(x), data)
        task_loss(config.task, out, y)
    except ValueError as e:  # said once, whether or not the message names the model already
        said = str(e).removeprefix(f"Invalid model {config.model!r}: ")
        raise ValueError(f"Invalid model {config.model!r}: {said}") from None
    except Exception as e:  # the user's forward raised: its message, on one line
        raise ValueError(f"Invalid model {config.model!r} for {data.name} (inputs "
                         f"{tuple(data.x_train.shape[1:])}, {config.task}): "
                         f"{type(e).__name__}: {' '.join(str(e).split())}") from None


def _callback_name(cb: Any) -> str:
    return str(getattr(cb, "name", type(cb).__name__))


def warm_up(config: TrainConfig, dataset: Any) -> None:
    """One untimed step of `config` on a throwaway model, so that one-time costs (lazy
    imports, JIT-compiled kernels, first-call allocations) are not charged to the first
    timed run. It touches no state a run depends on: runs seed their own weights and order."""
    data = on_device(dataset, config.device, config.torch_dtype)
    model = init_model(config.model, data, config.seed, config.torch_dtype).to(config.device)
    optimizer = make_optimizer(config, model)
    idx = next(batch_indices(len(data.y_train), config.batch_size, config.seed)).to(config.device)
    _train_step(model, optimizer, data.x_train[idx], data.y_train[idx], _syncer(config.device),
                config.task)


@dataclasses.dataclass
class _Run:
    """What a run has done so far (with the model and the optimizer: its checkpoint)."""

    curves: list[CurvePoint]
    train_s: float = 0.0
    opt_s: float = 0.0
    done: int = 0  # updates taken
    last_eval: int = 0


def _state(run: _Run, model: nn.Module, optimizer: torch.optim.Optimizer,
           scheduler: Any, device: str) -> dict[str, Any]:
    """The checkpoint after update `run.done` (see `optimlab.train.checkpoint`)."""
    return {"kind": "run", "step": run.done, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            # a model drawing random numbers while it trains (dropout) goes on with the same
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.startswith("cuda") else None,
            "curves": curves_state(run.curves), "train_s": run.train_s, "opt_s": run.opt_s,
            "last_eval": run.last_eval}


def _restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any, device: str) -> _Run:
    """Model, optimizer, schedule and random state as `_state` kept them; what was done."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return _Run(curves_from_state(state["curves"]), state["train_s"], state["opt_s"],
                state["step"], state["last_eval"])


def _begin(config: TrainConfig, data: Any, model: nn.Module, optimizer: torch.optim.Optimizer,
           scheduler: Any, resume: Resume | None) -> _Run:
    """The run as its checkpoint left it, or at step 0, evaluated (also when the checkpoint
    is of another kind: a vectorized group's member, resumed by another executor)."""
    state = from_bytes(resume.blob) if resume is not None and resume.blob is not None else {}
    if state.get("kind") == "run":
        return _restore(state, model, optimizer, scheduler, config.device)
    run = _Run([])
    _record_eval(run.curves, model, optimizer, data, 0, 0.0, config.task)
    return run


def train_run(config: TrainConfig, dataset: Any, *, callbacks: Sequence[Any] = (),
              resume: Resume | None = None) -> RunResult | None:
    """Train `config.model` on `dataset` with `config.optimizer`, η following
    `config.schedule`; evaluate at step 0, every
    `eval_every` steps and after the last step; stop early on a NaN/Inf minibatch loss.
    `resume`: go on from its checkpoint (if any) and hand it a new one on its cadence
    (`optimlab.train.checkpoint`); the result is the uninterrupted run's, clocks aside.
    None: the run paused at `resume.until` (its checkpoint there went to `resume.save`)."""
    data = on_device(dataset, config.device, config.torch_dtype)
    model = init_model(config.model, data, config.seed, config.torch_dtype).to(config.device)
    model.train()
    optimizer = make_optimizer(config, model)
    scheduler = schedules.build(config.schedule, optimizer, config.steps)
    sync = _syncer(config.device)
    # the callbacks' hooks, looked up once rather than on every step
    step_ends = [cb.on_step_end for cb in callbacks if hasattr(cb, "on_step_end")]
    shows = [cb.on_curves for cb in callbacks if hasattr(cb, "on_curves")]
    run = _begin(config, data, model, optimizer, scheduler, resume)
    cadence = Cadence(config.steps, run.done, resume.seconds) if resume is not None else None
    batches = batch_indices(len(data.y_train), config.batch_size, config.seed, run.done)
    end = resume.until if resume is not None and resume.until is not None else config.steps
    for step in range(run.done + 1, end + 1):
        idx = next(batches).to(config.device)
        loss, dt, dt_opt = _train_step(model, optimizer, data.x_train[idx], data.y_train[idx],
                                       sync, config.task)
        run.train_s, run.opt_s = run.train_s + dt, run.opt_s + dt_opt
        run.curves.append(CurvePoint(step, run.train_s, "batch", "loss", loss))
        if not math.isfinite(loss):
            break
        run.done = step
        for on_step_end in step_ends:
            on_step_end(step, model, optimizer)
        if scheduler is not None:  # after the callbacks: they see the η step `step` used
            scheduler.step()
        if step % config.eval_every == 0:
            _record_eval(run.curves, model, optimizer, data, step, run.train_s, config.task)
            run.last_eval = step
        for show in shows:
            show(run.curves)
        if resume is not None and cadence is not None and cadence.due(step):
            resume.save(step, to_bytes(_state(run, model, optimizer, scheduler, config.device)))
    if resume is not None and run.done == end < config.steps:
        resume.save(end, to_bytes(_state(run, model, optimizer, scheduler, config.device)))
        return None
    if run.last_eval != run.done:
        _record_eval(run.curves, model, optimizer, data, run.done, run.train_s,
                     config.task)
    for show in shows:
        show(run.curves)
    record = summary_record(config, run.curves, Timings(run.train_s, run.opt_s))
    extras = {_callback_name(cb): cb.result() for cb in callbacks if hasattr(cb, "result")}
    return RunResult(config, record, run.curves, extras)
