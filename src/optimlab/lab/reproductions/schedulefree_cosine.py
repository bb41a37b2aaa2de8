"""`schedulefree-cosine`: Defazio et al. 2024, "The Road Less Scheduled", §4.

The paper's claim: Schedule-Free AdamW, which needs no schedule and no stopping time,
matches or beats AdamW under a tuned cosine schedule (its experiments: from CIFAR to
AlgoPerf), where AdamW at a constant η falls behind both.

We tune η for each of the three on the same grid, the MNIST-1D MLP, the same steps and
seeds; each is evaluated as it is meant to be (Schedule-Free at its averaged weights x:
the lab calls its `eval()`), and the best final validation and training losses of each
are compared.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from optimlab import data
from optimlab.lab.reproduce import Check, Context, Outcome, Setting, train
from optimlab.train import TrainConfig

# label -> (optimizer, schedule)
ENTRIES = {"AdamW, cosine": ("adamw", "cosine"),
           "Schedule-Free AdamW": ("adamw-schedulefree", "constant"),
           "AdamW, constant η": ("adamw", "constant")}
GRID = [10 ** (e / 2) for e in range(-7, -2)]  # 3.2e-4 … 3.2e-2
STEPS = {False: 1500, True: 4000}
SEEDS = {False: 1, True: 3}
BATCH = 100
MATCH = 0.02  # "matches": its best within 2 % of cosine's (or better)
DECAY = 0.01  # torch's AdamW default, for every entry


def protocol(full: bool) -> list[Setting]:
    return [
        Setting("entries", list(ENTRIES), "source: the paper's comparison, and the constant "
                "η it improves on"),
        Setting("η grid", [f"{x:.2g}" for x in GRID], "choice: the same five half-decade "
                "steps for every entry (equal budget)"),
        Setting("other hyperparameters", f"βs (0.9, 0.999), weight decay {DECAY:g} for "
                "all, no warm-up", "choice: AdamW's default decay for every entry (the paper "
                "gives both methods the same), no warm-up for either"),
        Setting("model and data", "MNIST-1D MLP, batch 100, validation split of the lab",
                "choice: runs in about a minute here; the paper's workloads are far larger"),
        Setting("steps", STEPS[full], "choice: the cosine decays to 0 at the last step"),
        Setting("seeds", SEEDS[full], "choice: paired across entries"),
        Setting("result", "final validation loss, mean over seeds, at the best η; and the "
                "final training loss, the same way", "choice: selection on validation, as "
                "the lab tunes; the training loss is what the schedule itself optimizes"),
    ]


def _loss(run: dict[str, Any], split: str) -> float:
    loss = run["summary"].get(f"final_{split}_loss")
    return math.inf if run["summary"]["diverged"] or loss is None else float(loss)


def _best(losses: dict[str, dict[float, list[float]]]) -> tuple[dict[str, float], dict[str, float]]:
    """Each entry's best η and its mean loss over seeds there."""
    mean = {k: {lr: statistics.fmean(v) for lr, v in by.items()} for k, by in losses.items()}
    best = {k: min(by, key=by.__getitem__) for k, by in mean.items()}
    return best, {k: mean[k][best[k]] for k in losses}


def _checks(best: dict[str, float], top: dict[str, float], best_train: dict[str, float],
            top_train: dict[str, float]) -> list[Check]:
    """The claims against each entry's best η and mean loss there: validation (`best`,
    `top`) and training (`best_train`, `top_train`)."""
    cos, sf, const = (top[k] for k in ENTRIES)
    return [
        Check("Schedule-Free AdamW matches AdamW under a tuned cosine schedule",
              f"best validation loss within {MATCH:.0%} of cosine's, or lower",
              f"{sf:.4g} against {cos:.4g} ({(sf - cos) / cos:+.1%}; best η "
              f"{best['Schedule-Free AdamW']:.2g} and {best['AdamW, cosine']:.2g})",
              sf <= cos * (1 + MATCH)),
        Check("both beat AdamW at a tuned constant η", "lower best validation loss",
              f"constant η: {const:.4g} (best η {best['AdamW, constant η']:.2g})",
              sf < const and cos < const),
        # Added after the first reduced run: the MLP overfits MNIST-1D's 3600 examples, so
        # the best final validation loss sits at the smallest η that has not yet overfit;
        # the training loss is where a schedule's effect on the optimization shows.
        Check("Schedule-Free AdamW matches the tuned cosine schedule in training loss",
              f"best final training loss within {MATCH:.0%} of cosine's, or lower",
              " against ".join(f"{top_train[k]:.3g} (η {best_train[k]:.2g})"
                               for k in list(ENTRIES)[1::-1]),
              top_train["Schedule-Free AdamW"] <= top_train["AdamW, cosine"] * (1 + MATCH)),
    ]


def run(ctx: Context) -> Outcome:
    dataset = data.load("mnist1d")
    steps = STEPS[ctx.full]
    configs = [TrainConfig(dataset="mnist1d", model="mlp", optimizer=name,
                           hyperparameters={"lr": lr, "weight_decay": DECAY},
                           schedule=schedule, steps=steps,
                           batch_size=BATCH, seed=seed, eval_every=steps // 10)
               for name, schedule in ENTRIES.values() for lr in GRID
               for seed in range(SEEDS[ctx.full])]
    runs = train(ctx, configs, dataset)
    label = {v: k for k, v in ENTRIES.items()}
    losses: dict[str, dict[str, dict[float, list[float]]]] = {
        split: {k: {} for k in ENTRIES} for split in ("val", "train")}
    curves: dict[str, dict[float, list[list[float]]]] = {k: {} for k in ENTRIES}
    for r in runs:
        c = r["config"]
        key, lr = label[c["optimizer"], c["schedule"]], c["hyperparameters"]["lr"]
        for split, by in losses.items():
            by[key].setdefault(lr, []).append(_loss(r, split))
        if c["seed"] == 0:
            curves[key][lr] = [[p.step, p.value] for p in r["curves"]
                               if p.split == "val" and p.metric == "loss"]
    best, top = _best(losses["val"])
    best_train, top_train = _best(losses["train"])
    checks = _checks(best, top, best_train, top_train)
    numbers: dict[str, Any] = {f"mean_final_{split}_loss": {
                   k: {f"{lr:.2g}": (statistics.fmean(x) if all(map(math.isfinite, x))
                                     else None) for lr, x in by.items()}
                   for k, by in losses[split].items()} for split in losses}
    numbers.update({"best_lr": best, "best": top, "best_lr_train": best_train,
                    "best_train": top_train})
    figure = {"title": "Validation loss at each entry's best η, MNIST-1D MLP (seed 0)",
              "xlabel": "step", "ylabel": "validation loss", "log_y": True,
              "panels": [{"title": "at the best η",
                          "series": {k: curves[k].get(best[k], []) for k in ENTRIES}}]}
    return Outcome(dataset.summary(), protocol(ctx.full), checks, numbers, figure)
