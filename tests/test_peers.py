"""Parity with the published implementations that torch.optim does not hold (each skips
when its package, of the `peers` extra, is missing)."""

from __future__ import annotations

import pytest
from conftest import GradientField, max_rel_err
from test_optim_torch import drive, flat

from optimlab.optim import OPTIMIZERS, modes

# (ours, the peer's module:class, hyperparameters, gradient field, steps)
PEERS = [
    ("lion", "lion_pytorch:Lion", dict(lr=1e-3), "bowl", 200),
    ("lion", "lion_pytorch:Lion", dict(lr=3e-4, betas=(0.8, 0.95), weight_decay=0.5), "slope",
     200),
    ("adamw-schedulefree", "schedulefree:AdamWScheduleFree", dict(lr=1e-2), "bowl", 500),
    ("adamw-schedulefree", "schedulefree:AdamWScheduleFree",
     dict(lr=1e-2, warmup_steps=100, weight_decay=0.1), "bowl", 500),
    ("adamw-schedulefree", "schedulefree:AdamWScheduleFree",
     dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, warmup_steps=50, r=1.0, weight_lr_power=1.0),
     "slope", 500),
]


def published(path: str) -> type:
    module, name = path.split(":")
    return getattr(pytest.importorskip(module), name)


def _train_mode(opt) -> None:
    found = modes(opt)
    if found is not None:
        _, to_train = found
        to_train()


@pytest.mark.parametrize("impl", [dict(foreach=False), dict(foreach=True), dict(fused=True)],
                         ids=["reference", "foreach", "fused"])
@pytest.mark.parametrize("name,peer,kw,kind,steps", PEERS,
                         ids=[f"{p[0]}-{i}" for i, p in enumerate(PEERS)])
def test_parity_with_the_published_implementation_float64(name, peer, kw, kind, steps, impl):
    """Equal, to 1e-9, after `steps` float64 steps (warm-up included), and after `eval()`
    where the peer has one (Schedule-Free's averaged x)."""
    field = GradientField(kind=kind)
    ours, theirs = field.torch_params(), field.torch_params()
    opts = OPTIMIZERS[name](ours, **kw, **impl), published(peer)(theirs, **kw)
    for opt, params in zip(opts, (ours, theirs)):
        _train_mode(opt)
        drive(opt, params, field, steps)
    assert max_rel_err(flat(ours), flat(theirs)) <= 1e-9
    assert abs(flat(ours) - flat(field.torch_params())).max() > 1e-3
    if modes(opts[1]) is not None:
        trained = flat(ours)
        for opt in opts:
            opt.eval()
        assert max_rel_err(flat(ours), flat(theirs)) <= 1e-9
        assert abs(flat(ours) - trained).max() > 1e-6  # x is not y

