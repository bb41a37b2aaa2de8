"""What the training ecosystem does to an optimizer: low precision.

Every test runs over the registry (`SPECS`): a new optimizer gets them as it registers.
Where a test needs options that give the optimizer state (SGD's momentum), it takes the
optimizer's defaults and its rows in the NumPy reference's table.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import GradientField
from test_optim_reference import CASES

from optimlab.optim import SPECS

NAMES = list(SPECS)


def configs(name: str) -> list[dict[str, Any]]:
    """The optimizer's defaults, then its rows of the reference's table."""
    return [{}, *(kw for n, kw in CASES if n == name)]


def field_for(name: str, kw: dict[str, Any], shapes: list[tuple[int, ...]] | None = None
              ) -> GradientField:
    return GradientField(shapes=shapes or [(4, 3), (5,), (2, 2, 2)],
                         sign=-1.0 if kw.get("maximize") else 1.0,
                         kind="slope" if name == "rmsprop" else "bowl")


# ---- low precision -----------------------------------------------------------------
# The foreach path rounds as the per-tensor reference does (and as torch.optim's default
# CPU path, a per-tensor loop): torch's `_foreach_mul_` with a Python number rounds that
# number to bfloat16 (0.9 -> 0.8984375) first; the paths take it as a 0-d tensor.
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", NAMES)
def test_every_path_rounds_as_the_reference_in_low_precision(name, dtype):
    for kw in configs(name):
        field = field_for(name, kw)
        runs = {}
        for impl in ({"foreach": False}, {"foreach": True}, {}):
            params = field.torch_params(dtype)
            opt = SPECS[name].cls(params, **kw, **impl)
            for t in range(1, 101):
                field.set_torch_grads(params, t)
                opt.step()
            runs[opt.last_impl[0] if impl else "default"] = params
        ref = runs.pop("reference")
        assert any(not torch.equal(w, p.detach().to(dtype))
                   for w, p in zip(ref, field.torch_params(dtype)))  # it moved
        for impl, params in runs.items():
            for a, b in zip(params, ref):
                assert torch.equal(a, b), (kw, impl)
