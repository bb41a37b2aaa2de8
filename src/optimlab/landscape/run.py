"""Drive the optimizers over the 2-D test functions and record their paths.

The protocol (documented in paths.json as ``criterion``): for every function
and optimizer, each η of the same log grid runs the same number of steps from
the same start with the same noise seed. A run diverges when a value turns
non-finite or the point leaves the function's domain off target (the saddle's
domain is its plot box and its target f ≤ −1: leaving downhill is the escape
it is meant to show, leaving uphill along x is divergence). Among the runs
that did not diverge, the chosen η reaches the target in the fewest steps;
ties, and runs that never reach it, are ranked by the final gap f(w_T) − f*
(the saddle: f(w_T), lower is further escaped); remaining ties go to the
smaller η. ``lr`` given explicitly skips the grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from optimlab.lab.entries import Entry, parse_list
from optimlab.landscape.functions import FUNCTIONS, TestFunction
from optimlab.optim import LECTURE, OPTIMIZERS, evaluating, modes

# Half-decade steps over the range where any of the optimizers is useful on these functions.
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)

CRITERION = (__doc__ or "").split("\n\n")[1].replace("\n", " ").strip()


@dataclass
class LandscapeConfig:
    functions: tuple[str, ...] = tuple(FUNCTIONS)  # all six by default
    # entries [LABEL=]NAME[(key=value, ...)] (lab.entries); default: the lecture's four
    optimizers: tuple[str, ...] = LECTURE
    steps: int = 500  # enough for the best η of every optimizer to settle on the ravine
    lr: float | None = None  # None: pick η per optimizer from lr_grid
    noise: float = 0.0  # std of Gaussian noise added to every gradient component
    seed: int = 0  # seeds the gradient noise; the same for every η and optimizer
    lr_grid: tuple[float, ...] = field(default=LR_GRID)  # the candidates for η


def run_paths(fn: TestFunction, optimizer: str | Entry, lrs: Sequence[float], steps: int,
              noise: float = 0.0, seed: int = 0) -> list[dict[str, Any]]:
    """One run per η from fn.start for `steps` steps; a record per run with its path and metrics.

    `optimizer`: a name or an entry (its other hyperparameters apply to every run).
    The runs go side by side: one optimizer, one param group (a 2-element Parameter)
    per η, one batched evaluation of f per step. A run that diverges is frozen there.
    The noise, if any, is one draw per step shared by all runs (common random numbers).
    An optimizer with `eval()` and `train()` (Schedule-Free) steps in its train mode, and
    its path is the point it is evaluated at (x).
    """
    entry = optimizer if isinstance(optimizer, Entry) else Entry(optimizer)
    ws = [torch.nn.Parameter(torch.tensor(fn.start, dtype=torch.float64)) for _ in lrs]
    kwargs = {k: v for k, v in entry.hyperparameters.items() if k != "lr"}
    if entry.name in OPTIMIZERS:  # per-tensor reference path: least overhead on 2 elements
        kwargs.setdefault("foreach", False)
    opt = entry.optimizer_class()([{"params": [w], "lr": lr} for w, lr in zip(ws, lrs)],
                                  **kwargs)
    switch = modes(opt)  # a schedule-free optimizer steps at y; its path is x (`evaluating`)
    if switch is not None:
        _, to_train = switch
        to_train()
    gen = torch.Generator().manual_seed(seed)
    paths = [[list(fn.start)] for _ in lrs]
    stops = ["steps"] * len(lrs)
    for _ in range(steps):
        live = [i for i, s in enumerate(stops) if s == "steps"]
        if not live:
            break
        opt.zero_grad()
        w = torch.stack([ws[i] for i in live])
        loss = fn.f(w).sum()
        if noise:
            # a random linear term n·w adds exactly n to every run's gradient
            loss = loss + (w * torch.randn(2, generator=gen, dtype=torch.float64)).sum() * noise
        loss.backward()
        opt.step()
        with evaluating(opt):
            for i in live:
                stops[i] = _advance(fn, paths[i], ws[i].detach().tolist())
    return [{"lr": lr, "path": path, "stop": stop, **path_metrics(fn, path)}
            for lr, path, stop in zip(lrs, paths, stops)]


def _advance(fn: TestFunction, path: list[list[float]], xy: list[float]) -> str:
    """Append the new point unless it is non-finite; the run's status after it."""
    x, y = xy
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(fn.value(x, y))):
        return "nonfinite"
    path.append(xy)
    return "steps" if fn.in_domain(x, y) else "left_domain"


def path_metrics(fn: TestFunction, path: list[list[float]]) -> dict[str, Any]:
    """Final value, final distance to the minimum (saddle: from the saddle point) and
    steps_to_tol: the first step from which the path stays on target until its end."""
    centre = fn.minimum if fn.minimum is not None else (0.0, 0.0)
    settled = None
    for t in range(len(path) - 1, -1, -1):
        if not fn.on_target(*path[t]):
            break
        settled = t
    x, y = path[-1]
    return {"final_value": fn.value(x, y), "steps_to_tol": settled,
            "final_distance": math.hypot(x - centre[0], y - centre[1])}


def diverged(fn: TestFunction, run: dict[str, Any]) -> bool:
    """Non-finite, or out of the domain without being on target (the saddle's escape is)."""
    off_target = run["steps_to_tol"] is None
    return run["stop"] == "nonfinite" or (run["stop"] == "left_domain" and off_target)


def rank_key(fn: TestFunction, run: dict[str, Any]) -> tuple[float, float, float]:
    """The selection criterion as a sort key: smaller is better."""
    steps = run["steps_to_tol"] if run["steps_to_tol"] is not None else math.inf
    gap = run["final_value"] - (fn.f_min if fn.f_min is not None else 0.0)
    return (steps, gap, run["lr"])


def best_run(fn: TestFunction, optimizer: str | Entry, cfg: LandscapeConfig) -> dict[str, Any]:
    """Every η of the grid; the best by the criterion, with a summary of the others."""
    runs = run_paths(fn, optimizer, cfg.lr_grid, cfg.steps, cfg.noise, cfg.seed)
    ok = [r for r in runs if not diverged(fn, r)]
    best = min(ok or runs, key=lambda r: rank_key(fn, r))
    # every η's path is kept: the interactive report slides over them (it never re-runs)
    summary = [{k: r[k] for k in ("lr", "stop", "steps_to_tol", "final_distance", "final_value",
                                  "path")} for r in runs]
    return {**best, "lr_source": "grid", "grid": summary}


def fixed_run(fn: TestFunction, optimizer: str | Entry, cfg: LandscapeConfig) -> dict[str, Any]:
    """One run at the entry's own η, else `cfg.lr`."""
    entry = optimizer if isinstance(optimizer, Entry) else Entry(optimizer)
    lr = entry.hyperparameters.get("lr", cfg.lr)
    assert lr is not None
    run = run_paths(fn, entry, [lr], cfg.steps, cfg.noise, cfg.seed)[0]
    return {**run, "lr_source": "entry" if "lr" in entry.hyperparameters else "fixed"}


def function_record(fn: TestFunction) -> dict[str, Any]:
    """What a reader of paths.json needs to redraw and judge the runs of one function."""
    target = (f"distance to the minimum <= {fn.tol:g}" if fn.minimum is not None
              else f"f <= {-fn.tol:g} (escaped the saddle)")
    return {"formula": fn.formula, "minimum": fn.minimum, "f_min": fn.f_min,
            "start": list(fn.start), "bounds": list(fn.bounds), "tol": fn.tol,
            "target": target, "log_contours": fn.log_contours, "valley": fn.valley, "runs": {}}


def run_landscape(cfg: LandscapeConfig) -> dict[str, Any]:
    """All functions × optimizers of `cfg`: the plain record written to paths.json."""
    check_config(cfg)
    out: dict[str, Any] = {
        "kind": "optimlab.landscape", "version": 1,
        "config": {"steps": cfg.steps, "lr": cfg.lr, "noise": cfg.noise, "seed": cfg.seed,
                   "optimizers": list(cfg.optimizers), "lr_grid": list(cfg.lr_grid),
                   "hyperparameters": "each optimizer's class defaults besides lr, unless "
                                      "its entry gives them (each run's hyperparameters)"},
        "criterion": CRITERION if cfg.lr is None else "lr fixed by the user for all",
        "functions": {}}
    for name in cfg.functions:
        fn = FUNCTIONS[name]
        rec = out["functions"][name] = function_record(fn)
        for e in parse_list(cfg.optimizers):
            pick = fixed_run if cfg.lr is not None or "lr" in e.hyperparameters else best_run
            rec["runs"][e.label] = {**pick(fn, e, cfg), "optimizer": e.name,
                                    "hyperparameters": e.hyperparameters}
    return out


def check_config(cfg: LandscapeConfig) -> None:
    """Bad input is a ValueError naming the setting, its value and what is allowed."""
    for name in cfg.functions:
        if name not in FUNCTIONS:
            raise ValueError(f"Invalid function: {name!r}; allowed: {', '.join(FUNCTIONS)}, all")
    parse_list(cfg.optimizers)  # every entry resolves and its values are accepted
    if cfg.steps < 1:
        raise ValueError(f"Invalid steps: {cfg.steps}; allowed: an integer >= 1")
    for lr in ([cfg.lr] if cfg.lr is not None else list(cfg.lr_grid)):
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"Invalid lr: {lr}; allowed: a finite number > 0")
    if not (math.isfinite(cfg.noise) and cfg.noise >= 0):
        raise ValueError(f"Invalid noise: {cfg.noise}; allowed: a finite number >= 0")
