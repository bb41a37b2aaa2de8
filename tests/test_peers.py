"""Parity with the published implementations that torch.optim does not hold."""

from __future__ import annotations

import pytest
from conftest import GradientField, max_rel_err
from test_optim_torch import drive, flat

from optimlab.optim import OPTIMIZERS

lion_pytorch = pytest.importorskip("lion_pytorch")

# (ours, the peer's class, hyperparameters, gradient field)
PEERS = [
    ("lion", lion_pytorch.Lion, dict(lr=1e-3), "bowl"),
    ("lion", lion_pytorch.Lion, dict(lr=3e-4, betas=(0.8, 0.95), weight_decay=0.5), "slope"),
]


@pytest.mark.parametrize("impl", [dict(foreach=False), dict(foreach=True), dict(fused=True)],
                         ids=["reference", "foreach", "fused"])
@pytest.mark.parametrize("name,peer,kw,kind", PEERS, ids=[f"{p[0]}-{i}" for i, p in
                                                         enumerate(PEERS)])
def test_parity_with_the_published_implementation_200_float64_steps(name, peer, kw, kind,
                                                                     impl):
    field = GradientField(kind=kind)
    ours, theirs = field.torch_params(), field.torch_params()
    drive(OPTIMIZERS[name](ours, **kw, **impl), ours, field, 200)
    drive(peer(theirs, **kw), theirs, field, 200)
    assert max_rel_err(flat(ours), flat(theirs)) <= 1e-9
    assert abs(flat(ours) - flat(field.torch_params())).max() > 1e-3
