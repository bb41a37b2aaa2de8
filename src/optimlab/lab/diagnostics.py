"""An opt-in step-size recorder for training runs (a callback of `optimlab.train.train_run`).

Every `every` steps it records, per parameter tensor ("layer"):
- the update-to-weight ratio ‖Δw‖/‖w‖ of that step (all optimizers), and for the
  whole model ‖Δw‖/‖w‖ over all tensors together;
- for optimizers with a second moment (RMSprop, Adam, AdamW), quantiles of the
  effective step size η/(√ŝ + ε) that `optimlab.optim.diagnostics` defines
  (Adam: the factor on v̂, RMSprop: the factor on g), over a fixed random
  subsample of at most `sample` elements.

Cost: ‖Δw‖ needs the weights before the step; the callbacks only see the end of
a step, so the recorder copies the weights at the end of the step just before a
recording step (one copy every `every` steps, not every step). Between
recordings a call is one modulo test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from optimlab.optim import OPTIMIZERS
from optimlab.optim.diagnostics import effective_step_size


@dataclass
class StepSizeRecorder:
    every: int = 50  # record every 50th step: 120 points on a 6000-step run, negligible cost
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)  # a band and its middle
    sample: int = 1024  # elements per tensor for the quantiles (±1.5 % in rank); exact below
    seed: int = 0  # fixes which elements are sampled
    name: str = "step_sizes"  # the key of this record in the run's extras / diagnostics.json
    _snapshot: tuple[int, list[torch.Tensor]] | None = field(default=None, repr=False)
    _index: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    _rec: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"Invalid every: {self.every!r}; allowed: an integer >= 1")
        if isinstance(self.sample, bool) or not isinstance(self.sample, int) or self.sample < 1:
            raise ValueError(f"Invalid sample: {self.sample!r}; allowed: an integer >= 1")
        if not self.quantiles or not all(0 <= q <= 1 for q in self.quantiles):
            raise ValueError(f"Invalid quantiles: {self.quantiles!r}; allowed: a non-empty "
                             "sequence of numbers in [0, 1]")

    def on_step_end(self, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> None:
        if self._snapshot is not None and self._snapshot[0] == step - 1:
            self._record(step, model, optimizer, self._snapshot[1])
            self._snapshot = None
        if (step + 1) % self.every == 0:
            self._snapshot = (step, [p.detach().clone() for p in model.parameters()])

    def _record(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                before: list[torch.Tensor]) -> None:
        rec = self._rec or self._start(model, optimizer)
        rec["steps"].append(step)
        named = list(model.named_parameters())
        with torch.no_grad():
            # one host transfer for all norms: a sync per tensor would cost more than the math
            sums = torch.stack([torch.stack([(p - old).double().square().sum(),
                                             old.double().square().sum()])
                                for (_, p), old in zip(named, before)]).cpu()
            for (name, p), (d2, n2) in zip(named, sums.tolist()):
                rec["update_ratio"][name].append(_ratio(d2, n2))
                eff = effective_step_size(optimizer, p)
                if eff is not None:
                    self._add_quantiles(rec["effective_step"].setdefault(name, {}), p, eff)
        du2, w2 = sums.sum(0).tolist()
        rec["update_ratio_total"].append(_ratio(du2, w2))

    def _add_quantiles(self, out: dict[str, list[float]], p: torch.Tensor,
                       eff: torch.Tensor) -> None:
        flat = eff.reshape(-1)
        if flat.numel() > self.sample:
            if id(p) not in self._index:
                gen = torch.Generator().manual_seed(self.seed + len(self._index))
                self._index[id(p)] = torch.randperm(flat.numel(), generator=gen)[:self.sample]
            flat = flat[self._index[id(p)].to(flat.device)]
        for q, v in zip(self.quantiles, _quantiles(flat, self.quantiles)):
            out.setdefault(f"q{q:g}", []).append(v)

    def _start(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        names = [n for n, _ in model.named_parameters()]
        kind = next((k for k, cls in OPTIMIZERS.items() if type(optimizer) is cls),
                    type(optimizer).__name__)
        self._rec = {"kind": "optimlab.step_sizes", "version": 1, "optimizer": kind,
                     "every": self.every, "quantiles": list(self.quantiles),
                     "sample": self.sample, "layers": names, "steps": [],
                     "update_ratio": {n: [] for n in names}, "update_ratio_total": [],
                     "effective_step": {}, "definition": DEFINITION}
        return self._rec

    def result(self) -> dict[str, Any]:
        """The records so far: plain lists, JSON-able (empty before the first recording)."""
        return self._rec


DEFINITION = ("update_ratio: ‖w_t − w_(t−1)‖/‖w_(t−1)‖ per tensor at the recorded step t; "
              "effective_step: quantiles over elements of η/(√ŝ+ε) (Adam: ŝ = s/(1−β₂ᵗ), "
              "the factor on v̂; RMSprop: ŝ = s, the factor on g), see "
              "optimlab.optim.diagnostics.effective_step_size")


def _quantiles(x: torch.Tensor, qs: tuple[float, ...]) -> list[float]:
    """torch.quantile's linear interpolation from one sort (torch.quantile cost far more:
    docs/diagnostics.md)."""
    s = x.double().sort().values
    pos = torch.tensor(qs, dtype=torch.float64, device=s.device) * (len(s) - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=len(s) - 1)
    return (s[lo] + (s[hi] - s[lo]) * (pos - lo)).tolist()


def _ratio(d2: float, n2: float) -> float | None:
    return (d2 / n2) ** 0.5 if n2 > 0 else None
