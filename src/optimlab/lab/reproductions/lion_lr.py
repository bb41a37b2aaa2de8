"""`lion-lr`: Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", §5.

§5 ("Lion's learning rate and weight decay"): every weight moves by ±η per step, a larger
norm than an adaptive method's update, so "the default learning rate for Lion is typically
3-10x smaller than that for AdamW" for the same result, and its λ as much larger, so that
ηλ, the strength of the decoupled decay, stays the same.

We tune η for AdamW and Lion on the same log grid, on the MNIST-1D MLP, with the same
budget and seeds, and read the ratio of their best η's and how close their best results
come. The decay is off for both, so that η alone is compared.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from optimlab import data
from optimlab.lab.reproduce import Check, Context, Outcome, Setting, train
from optimlab.train import TrainConfig

# half-decade steps: a ratio of best η's is a power of √10 (1, 3.2, 10, 32, …)
GRID = {"adamw": [10 ** (e / 2) for e in range(-8, -1)],    # 1e-4 … 0.1
        "lion": [10 ** (e / 2) for e in range(-10, -3)]}    # 1e-5 … 0.01
STEPS = {False: 1000, True: 3000}
SEEDS = {False: 1, True: 3}
BATCH = 100  # MNIST-1D's
RATIO = (3.0, 10.0)  # the claim's range, each end included (the grid's 3.16 and 10)
SAME = 0.25  # "the same result": best losses within 25 % of each other


def protocol(full: bool) -> list[Setting]:
    return [
        Setting("η grids", {n: [f"{x:.2g}" for x in g] for n, g in GRID.items()},
                "choice: the same seven half-decade steps, Lion's a decade lower, each "
                "wide enough that its best lies inside"),
        Setting("weight decay", 0, "choice: off for both, so that η alone is compared "
                "(§5 scales λ up by the same factor to keep ηλ)"),
        Setting("βs", "AdamW (0.9, 0.999), Lion (0.9, 0.99)", "source: the defaults of §5"),
        Setting("model and data", "MNIST-1D MLP, batch 100", "choice: the lab's model that "
                "runs this grid in about a minute; the paper's models are far larger"),
        Setting("steps", STEPS[full], "choice: 25 epochs (75 with --full)"),
        Setting("seeds", SEEDS[full], "choice: paired across optimizers and η"),
        Setting("result", "final training loss, mean over seeds", "choice: what an η "
                "tunes; a diverged run counts as +∞"),
    ]


def _loss(run: dict[str, Any]) -> float:
    loss = run["summary"]["final_train_loss"]
    return math.inf if run["summary"]["diverged"] or loss is None else float(loss)


def run(ctx: Context) -> Outcome:
    dataset = data.load("mnist1d")
    configs = [TrainConfig(dataset="mnist1d", model="mlp", optimizer=name,
                           hyperparameters={"lr": lr, "weight_decay": 0.0},
                           steps=STEPS[ctx.full], batch_size=BATCH, seed=seed,
                           eval_every=STEPS[ctx.full] // 4)
               for name, grid in GRID.items() for lr in grid for seed in range(SEEDS[ctx.full])]
    runs = train(ctx, configs, dataset)
    losses: dict[str, dict[float, list[float]]] = {name: {} for name in GRID}
    for r in runs:
        config = r["config"]
        losses[config["optimizer"]].setdefault(config["hyperparameters"]["lr"], []).append(
            _loss(r))
    mean = {name: {lr: statistics.fmean(v) for lr, v in by.items()} for name, by in losses.items()}
    best = {name: min(by, key=by.__getitem__) for name, by in mean.items()}
    ratio = best["adamw"] / best["lion"]
    inside = all(min(GRID[n]) < best[n] < max(GRID[n]) for n in GRID)
    a, b = mean["adamw"][best["adamw"]], mean["lion"][best["lion"]]
    checks = [
        Check("Lion's best η is 3–10× smaller than AdamW's", "η_AdamW / η_Lion in [3, 10]",
              f"{ratio:.3g} (AdamW {best['adamw']:.2g}, Lion {best['lion']:.2g}"
              f"{'' if inside else '; a best η at its grid edge'})",
              RATIO[0] <= ratio <= RATIO[1] * (1 + 1e-9) and inside),
        Check("at their best η both reach the same result", f"within {SAME:.0%}",
              f"final training loss AdamW {a:.3g}, Lion {b:.3g} ({abs(b - a) / a:.0%} apart)",
              math.isfinite(a) and math.isfinite(b) and abs(b - a) <= SAME * min(a, b)),
    ]
    numbers = {"mean_final_train_loss": {n: {f"{lr:.3g}": (x if math.isfinite(x) else None)
                                             for lr, x in by.items()} for n, by in mean.items()},
               "best_lr": best, "ratio": ratio}
    figure = {"title": "Final training loss against η: AdamW and Lion, MNIST-1D MLP",
              "xlabel": "log₁₀ η", "ylabel": "final training loss", "log_y": True,
              "panels": [{"title": "η sweep", "series": {
                  n: [[math.log10(lr), x] for lr, x in by.items() if math.isfinite(x)]
                  for n, by in mean.items()}}]}
    return Outcome(dataset.summary(), protocol(ctx.full), checks, numbers, figure)
