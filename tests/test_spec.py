"""The specifications: one per optimizer, consistent with its class, the only list of names."""

from __future__ import annotations

import inspect

import pytest
import torch

from optimlab.bench.cases import peer_class
from optimlab.kernels import numba_cpu
from optimlab.optim import LECTURE, OPTIMIZERS, SPECS
from optimlab.optim._spec import RUN_OPTIONS, Batched, OptimizerSpec, register


def test_the_registry_is_in_the_lectures_order_and_derives_the_tables():
    assert list(SPECS)[:4] == ["sgd", "momentum", "rmsprop", "adam"]
    assert LECTURE == ("sgd", "momentum", "rmsprop", "adam")
    assert len(set(SPECS)) == len(SPECS)
    assert OPTIMIZERS == {name: spec.cls for name, spec in SPECS.items()}


@pytest.mark.parametrize("name", list(SPECS))
def test_a_spec_agrees_with_its_class(name):
    spec = SPECS[name]
    sig = inspect.signature(spec.cls).parameters
    assert set(spec.hyperparameters) == set(sig) - {"params", *RUN_OPTIONS}
    assert spec.defaults == {k: sig[k].default for k in spec.hyperparameters}
    spec.check(spec.defaults)  # the defaults are allowed values
    assert spec.cls.spec is spec  # the class validates with it
    assert spec.kernel in numba_cpu.KERNELS
    assert isinstance(spec.batched, Batched)
    for key in (*spec.batched.per_member, *spec.batched.shared):
        assert key in spec.hyperparameters
    peer_cls, peer_kw = spec.peer
    if isinstance(peer_cls, str):  # a package's class, by its path (the peers extra)
        pytest.importorskip(peer_cls.split(":")[0])
        peer_cls, peer_kw = peer_class(name)
    assert issubclass(peer_cls, torch.optim.Optimizer)
    peer_cls([torch.zeros(1, requires_grad=True)], **peer_kw)


@pytest.mark.parametrize("name,kw,message", [
    ("adam", dict(betas=(0.9, 1.0)), "Invalid betas[1]: 1.0; allowed: 0 <= betas[1] < 1"),
    ("adam", dict(betas=0.9), "Invalid betas: 0.9; allowed: a pair (beta1, beta2)"),
    ("rmsprop", dict(alpha=-0.1), "Invalid alpha: -0.1; allowed: 0 <= alpha < 1"),
    ("adagrad", dict(lr_decay=float("inf")), "Invalid lr_decay: inf; allowed: a finite number"),
    ("adagrad", dict(initial_accumulator_value=-1.0), "Invalid initial_accumulator_value: -1.0"),
    ("sgd", dict(nesterov="yes"), "Invalid nesterov: 'yes'; allowed: True or False"),
    ("adam", dict(bias_correction=0), "Invalid bias_correction: 0; allowed: True or False"),
])
def test_the_class_and_the_spec_give_the_same_one_line_error(name, kw, message):
    with pytest.raises(ValueError) as raised:
        SPECS[name].cls([torch.zeros(1, requires_grad=True)], **kw)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ValueError, match="Invalid"):
        SPECS[name].check(kw)


def test_an_unknown_hyperparameter_names_the_allowed_ones():
    with pytest.raises(ValueError, match="'gamma' for adagrad; allowed: lr, lr_decay,"):
        SPECS["adagrad"].check({"gamma": 1.0})


def test_a_pair_splits_into_its_names_and_back():
    spec = SPECS["adam"]
    assert spec.flatten({"lr": 0.1, "betas": (0.5, 0.99)}) == {
        "lr": 0.1, "beta1": 0.5, "beta2": 0.99}
    assert spec.unflatten({"beta1": 0.5}) == {"betas": [0.5, 0.999]}
    assert spec.flat_keys(("lr", "betas")) == ("lr", "beta1", "beta2")


def test_a_spec_must_name_every_keyword_of_its_class_and_a_name_once():
    class Plain(torch.optim.SGD):
        pass

    with pytest.raises(TypeError, match="must be the keywords of Plain"):
        OptimizerSpec(name="plain", cls=Plain, hyperparameters={}, formula=None, batched=None,
                      peer=(torch.optim.SGD, {}))
    with pytest.raises(ValueError, match="'sgd' is registered already"):
        register(SPECS["sgd"])
