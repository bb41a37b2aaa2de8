"""What the fused step's replay is worth: the lab-scale step with and without it.

`optimlab bench --models lab-logreg,lab-cnn,lab-mlp` times our default step against
torch's fastest (`optimlab.bench.lab_scale`); this times, in the same interleaved rounds,
our step as it is, our step with the replay turned off (every step a full one), and
torch's, and prints the ratios (medians of the calling thread's CPU time per step).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch

from optimlab.bench.cases import Impl
from optimlab.bench.lab_scale import LAB_MODELS, VARIANTS, contenders, run_lab_case
from optimlab.optim import SPECS


def without_replay(ours: Impl) -> Impl:
    """`ours` with every step a full one."""
    def make(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        opt = ours.make(params)
        opt._replays = False  # type: ignore[attr-defined]
        return opt
    return Impl("ours-no-replay", make)


def ratios(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Per variant: ours ÷ torch's, ours without the replay ÷ torch's, and ours ÷ ours
    without the replay."""
    out = []
    for variant in VARIANTS:
        us = {r["impl"]: r["us"] for r in case["rows"] if r["variant"] == variant}
        torch_us = us[case["peer"]]
        out.append({"optimizer": case["optimizer"], "model": case["model"],
                    "variant": variant, "replay": us["ours"] / torch_us,
                    "no_replay": us["ours-no-replay"] / torch_us,
                    "replay_over_no_replay": us["ours"] / us["ours-no-replay"]})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m optimlab.bench.replay",
                                description=__doc__.splitlines()[0])
    p.add_argument("--optimizers", default=",".join(SPECS), metavar="NAMES")
    p.add_argument("--models", default=",".join(LAB_MODELS), metavar="MODELS")
    p.add_argument("--repeats", type=int, default=11, help="interleaved rounds")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"Invalid --repeats: {args.repeats}; allowed: an integer >= 1")
    for flag, names, allowed in (("--optimizers", args.optimizers, SPECS),
                                 ("--models", args.models, LAB_MODELS)):
        for name in names.split(","):
            if name not in allowed:
                p.error(f"Invalid {flag}: {name!r}; allowed: {', '.join(allowed)}")
    torch.set_num_threads(1)  # the lab-scale steps run on the calling thread
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"{args.repeats} rounds, ratios of medians of thread CPU time per step")
    print("| optimizer | model | variant | ours ÷ torch | without replay ÷ torch "
          "| ours ÷ without replay |\n|---|---|---|---|---|---|")
    for optimizer in args.optimizers.split(","):
        impls = contenders(optimizer)
        impls["ours-no-replay"] = without_replay(impls["ours"])
        for model in args.models.split(","):
            case = run_lab_case(optimizer, model, torch.float32, args.repeats, 20, 0.02, impls)
            for r in ratios(case):
                print(f"| {optimizer} | {model} | {r['variant']} | {r['replay']:.2f} "
                      f"| {r['no_replay']:.2f} | {r['replay_over_no_replay']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
