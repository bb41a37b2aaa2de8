"""`muon-transformer`: Jordan et al. 2024, Muon against AdamW, in steps to a target.

The source ("Muon: An optimizer for hidden layers in neural networks", 2024) trains the
hidden matrices of a transformer with Muon and everything else (embeddings, the output
head, gains) with AdamW, and reports that it reaches the AdamW baseline's validation
loss in fewer steps: the NanoGPT speedrun's 1.35× sample efficiency. We run the suite's
transformer workload (`lookup-transformer`: the lab's small transformer on the lookup
task, validation accuracy 0.7 as the target) with AdamW at compare's η and with Muon at
the source's settings, paired over seeds, and count the steps to the target.
"""

from __future__ import annotations

import statistics
from typing import Any

from optimlab import data
from optimlab.lab.reproduce import Check, Context, Outcome, Setting, train
from optimlab.lab.suite import BUILTIN
from optimlab.train import TrainConfig

WORKLOAD = BUILTIN["lookup-transformer"]
ADAMW = {"lr": 1e-2}  # compare's η for AdamW (lab/policy.py's measured grid)
# the source's η and momentum for the matrices; the embeddings and the head (the first and
# last matrix of the model) and every vector take AdamW at AdamW's own η
MUON = {"lr": 0.02, "momentum": 0.95, "nesterov": True, "adamw_ends": True,
        "adamw_lr": ADAMW["lr"]}
SPEEDUP = 1.35  # the speedrun's sample efficiency over AdamW
# Both reach the target within the first 60 of the 400 steps: evaluating every 5 steps (the
# suite's 25 would leave the steps to target a straight line across a third of that) keeps
# the interpolation's error to a few steps
EVAL_EVERY = 5
SEEDS = {False: 3, True: 7}


def protocol(seeds: int) -> list[Setting]:
    return [
        Setting("workload", f"{WORKLOAD.name}: {WORKLOAD.model} on {WORKLOAD.data}, batch "
                f"{WORKLOAD.batch_size}, {WORKLOAD.steps} steps, target validation accuracy "
                f"{WORKLOAD.target_acc}", "choice: the suite's transformer workload "
                "(lab/suite.py); the source's NanoGPT does not fit this machine"),
        Setting("AdamW", f"lr {ADAMW['lr']:g}, betas (0.9, 0.999), eps 1e-8, weight decay "
                "0.01", "choice: compare's measured η (lab/policy.py), torch's defaults"),
        Setting("Muon", "lr 0.02, momentum 0.95, nesterov, 5 Newton–Schulz steps, weight "
                "decay 0.1; embeddings, head and vectors AdamW at AdamW's settings",
                "source: η, μ, nesterov and the split; torch.optim.Muon's weight decay"),
        Setting("seeds", seeds, "choice: paired (same initial weights and batches for "
                "both); 7 with --full, the suite's count"),
        Setting("measure", "steps to the target, interpolated between evaluations every "
                f"{EVAL_EVERY} steps", "source: steps to the baseline's loss; choice: the "
                "suite's accuracy target, evaluated 5× as often as the suite does (both "
                "reach it within 60 steps)"),
    ]


def _steps(runs: list[dict[str, Any]], name: str) -> list[float | None]:
    """Steps to target of optimizer `name`'s runs, by seed (None: never reached)."""
    mine = sorted((r for r in runs if r["config"]["optimizer"] == name),
                  key=lambda r: r["config"]["seed"])
    return [r["summary"].get("time_to_target_step") for r in mine]


def _checks(adamw: list[float | None], muon: list[float | None]) -> tuple[list[Check], float]:
    budget = float(WORKLOAD.steps)
    capped = [(a if a is not None else budget, m if m is not None else budget)
              for a, m in zip(adamw, muon, strict=True)]
    ratio = statistics.median(a / m for a, m in capped)
    seeds = " / ".join(f"{a:.0f} vs {m:.0f}" for a, m in capped)
    fewer = sum(m < a for a, m in capped)
    return [
        Check("Muon reaches the target in fewer steps than AdamW (median, paired seeds)",
              "fewer steps", f"median AdamW/Muon {ratio:.2f}× (AdamW vs Muon steps per "
              f"seed: {seeds}; a run that never reaches counts as the budget)",
              ratio > 1 and fewer > len(capped) / 2),
        Check(f"by about the speedrun's {SPEEDUP}× or more", f"{SPEEDUP}×", f"{ratio:.2f}×",
              ratio >= SPEEDUP),
    ], ratio


def run(ctx: Context) -> Outcome:
    seeds = SEEDS[ctx.full]
    dataset = data.load(WORKLOAD.data)
    configs = [TrainConfig(dataset=WORKLOAD.data, model=WORKLOAD.model, optimizer=name,
                           hyperparameters=hp, steps=WORKLOAD.steps,
                           batch_size=WORKLOAD.batch_size, seed=s,
                           eval_every=EVAL_EVERY, target_acc=WORKLOAD.target_acc)
               for name, hp in (("adamw", ADAMW), ("muon", MUON)) for s in range(seeds)]
    runs = train(ctx, configs, dataset)
    adamw, muon = _steps(runs, "adamw"), _steps(runs, "muon")
    checks, ratio = _checks(adamw, muon)
    panels: dict[str, dict[str, list[list[float]]]] = {"adamw": {}, "muon": {}}
    for r in runs:
        panels[r["config"]["optimizer"]][f"seed {r['config']['seed']}"] = [
            [p.step, p.value] for p in r["curves"] if p.split == "val" and p.metric == "acc"]
    numbers = {"steps_to_target": {"adamw": adamw, "muon": muon},
               "median_ratio_adamw_over_muon": ratio, "budget": WORKLOAD.steps}
    figure = {"title": f"Validation accuracy, {WORKLOAD.name}", "xlabel": "step",
              "ylabel": "validation accuracy",
              "panels": [{"title": name, "series": panels[name],
                          "hlines": {"target": WORKLOAD.target_acc}} for name in panels]}
    return Outcome(dataset.summary(), protocol(seeds), checks, numbers, figure)
