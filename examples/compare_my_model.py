"""Compare optimizers on your own model and data: both are defined in this file.

The data are scikit-learn's handwritten digits (1,797 8×8 images, shipped with the
package: offline; `pip install 'optimlab[examples]'`), the model a small CNN written here,
and one optimizer is written here too (signSGD), next to the built-ins and torch's NAdam.

From Python (this script):

    python examples/compare_my_model.py --steps 300

From the command line, the same objects by their import paths (run in examples/, or with
examples/ on PYTHONPATH):

    optimlab compare --dataset compare_my_model:digits --model compare_my_model:SmallCNN \\
        --optimizers "sgd(lr=0.1), adam, slow=adam(betas=(0.5, 0.999)), \\
                      torch.optim:NAdam(lr=2e-3), sign=compare_my_model:SignSGD(lr=1e-3)" \\
        --steps 300 --eval-every 50 --batch-size 64 --target-acc 0.9
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

# The comparison run by this script; the command line above names the same entries.
OPTIMIZERS = ["sgd(lr=0.1)", "adam", "slow=adam(betas=(0.5, 0.999))",
              "torch.optim:NAdam(lr=2e-3)", "sign=compare_my_model:SignSGD(lr=1e-3)"]


def digits() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, test) as tensor pairs: images [N, 1, 8, 8] in [0, 1], labels 0..9; the last
    297 images are the test set (sklearn keeps the digits in writer order)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return (x[:1500], y[:1500]), (x[1500:], y[1500:])


class SmallCNN(nn.Module):
    """Two 3×3 convolutions (8 and 16 channels), 2×2 max-pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class SignSGD(torch.optim.Optimizer):
    """signSGD (Bernstein et al., 2018): w ← w − η sign(g)."""

    def __init__(self, params, lr: float = 1e-3):
        if not lr > 0:
            raise ValueError(f"Invalid lr: {lr}; allowed: > 0")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])


def main() -> None:
    import optimlab

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--seeds", type=int, default=2, help="runs per optimizer")
    parser.add_argument("--out", help="output folder (default runs/compare-<timestamp>)")
    args = parser.parse_args()
    result = optimlab.compare(model=SmallCNN, data=digits(), optimizers=OPTIMIZERS,
                              steps=args.steps, seeds=args.seeds, batch_size=64,
                              eval_every=max(1, args.steps // 6), target_acc=0.9, out=args.out)
    for row in result.rows:
        print(f"{row['run']:<24} test acc {row['final_test_acc']:.1%}  "
              f"{row['train_seconds']:.1f} s")
    print(f"report: {result.report}")


if __name__ == "__main__":
    main()
