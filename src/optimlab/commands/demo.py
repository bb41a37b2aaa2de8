"""`optimlab demo`: a small least-squares-plus-MLP problem trained with each optimizer."""

from __future__ import annotations

import argparse

import torch

from optimlab.optim import OPTIMIZERS

# Per-optimizer learning rates that work on this problem; EMA momentum shares SGD's scale.
DEMO_LR = {"sgd": 0.1, "momentum": 0.1, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed for data and weights (default 0)")


def _train(name: str, steps: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 8, generator=gen)
    y = torch.sin(x @ torch.randn(8, 1, generator=gen))
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    opt = OPTIMIZERS[name](model.parameters(), lr=DEMO_LR[name])
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(x), y))


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise SystemExit(f"optimlab demo: invalid --steps {args.steps}; allowed: >= 1")
    print(f"{'optimizer':<10} {'lr':>8} {'final MSE':>12}")
    for name in ("sgd", "momentum", "rmsprop", "adam"):
        print(f"{name:<10} {DEMO_LR[name]:>8g} {_train(name, args.steps, args.seed):>12.5f}")
    return 0
