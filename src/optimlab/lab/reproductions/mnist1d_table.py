"""`mnist1d-table`: the MNIST-1D paper's test accuracies of its three reference models.

The source trains each model with Adam (lr 1e-2, batch 100, 6000 steps) on the 4000
training examples and reports the test accuracy: logistic regression 32 %, MLP 68 %,
CNN 94 %. We train the same models (`optimlab.models`, the reference architectures)
the same way. A model's number is reproduced when our mean final test accuracy lies
within `TOLERANCE` of the published one.
"""

from __future__ import annotations

import statistics

from optimlab import data
from optimlab.lab.reproduce import Check, Context, Outcome, Setting, train
from optimlab.train import TrainConfig

PUBLISHED = {"logreg": 0.32, "mlp": 0.68, "cnn": 0.94}
NAMES = {"logreg": "logistic regression", "mlp": "MLP", "cnn": "CNN"}
# The paper gives one rounded number per model, no spread; our seed-to-seed std is about
# one point (README's 3-seed run: 1.3, 1.1, 0.9), so ±3 points is three of those.
TOLERANCE = 0.03
LR, BATCH, STEPS = 1e-2, 100, 6000
EVAL_EVERY = 500  # 13 points per curve; evaluation is outside the training clock


def protocol(seeds: dict[str, int]) -> list[Setting]:
    return [
        Setting("dataset", "mnist1d, all 4000 training examples (val_fraction 0), 1000 test",
                "source: the paper's split"),
        Setting("models", "logreg, mlp, cnn", "source: the reference models of the MNIST-1D "
                "repository (optimlab.models)"),
        Setting("optimizer", f"Adam, lr {LR:g}, betas (0.9, 0.999), eps 1e-8", "source"),
        Setting("batch size", BATCH, "source"),
        Setting("steps", STEPS, "source"),
        Setting("seeds", seeds, "choice: the paper reports one number per model; three "
                "seeds give a mean and a spread; the reduced run trains the CNN (three "
                "quarters of the time) under seed 0 only"),
        Setting("metric", "final test accuracy, mean over seeds", "choice: the accuracy "
                "after the last step; the best during training would select on test"),
        Setting("tolerance", f"±{TOLERANCE:.0%} points", "choice: three times our "
                "seed-to-seed standard deviation (≈ 1 point); the paper gives no spread"),
    ]


def run(ctx: Context) -> Outcome:
    seeds = {"logreg": 3, "mlp": 3, "cnn": 3 if ctx.full else 1}
    dataset = data.load("mnist1d", val_fraction=0.0)
    configs = [TrainConfig(dataset="mnist1d", model=m, optimizer="adam",
                           hyperparameters={"lr": LR}, steps=STEPS, batch_size=BATCH,
                           seed=s, eval_every=EVAL_EVERY)
               for m in PUBLISHED for s in range(seeds[m])]
    runs = train(ctx, configs, dataset)
    accs: dict[str, list[float]] = {m: [] for m in PUBLISHED}
    panels: dict[str, dict[str, list[list[float]]]] = {m: {} for m in PUBLISHED}
    for r in runs:
        model = r["config"]["model"]
        accs[model].append(r["summary"]["final_test_acc"])
        panels[model][f"seed {r['config']['seed']}"] = [
            [p.step, p.value] for p in r["curves"] if p.split == "test" and p.metric == "acc"]
    checks, numbers = [], {}
    for model, published in PUBLISHED.items():
        mean = statistics.fmean(accs[model])
        std = statistics.stdev(accs[model]) if len(accs[model]) > 1 else 0.0
        numbers[model] = {"final_test_acc": accs[model], "mean": mean, "std": std,
                          "published": published}
        each = " / ".join(f"{a:.1%}" for a in accs[model])
        checks.append(Check(
            f"{NAMES[model]} reaches ≈ {published:.0%} test accuracy",
            f"{published:.0%}", f"{mean:.1%} ± {std:.1%} (seeds: {each})",
            abs(mean - published) <= TOLERANCE + 1e-12))
    figure = {"title": "MNIST-1D test accuracy during training (Adam, lr 1e-2)",
              "xlabel": "step", "ylabel": "test accuracy",
              "panels": [{"title": NAMES[m], "series": panels[m],
                          "hlines": {f"published {PUBLISHED[m]:.0%}": PUBLISHED[m]}}
                         for m in PUBLISHED]}
    return Outcome(dataset.summary(), protocol(seeds), checks, numbers, figure)
