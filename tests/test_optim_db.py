"""The table of optimizers itself: a row for every registered optimizer, each consistent
with its specification, and an oracle that stays independent of the code under test."""

from __future__ import annotations

import ast
import inspect

import numpy_reference
import pytest
import torch
from optim_db import DB, NAMES, ROWS

from optimlab.optim import SPECS


def test_every_registered_optimizer_has_a_row_and_every_row_an_optimizer():
    missing = [name for name in SPECS if name not in DB]
    assert not missing, (f"no row in tests/optim_db.py for {missing}: add one (its NumPy "
                         "reference in tests/numpy_reference.py, its cases, members and peer)")
    assert NAMES == [name for name in SPECS if name in DB], "a row without a registered spec"
    assert len(ROWS) == len(DB)


def test_the_reference_is_written_apart_from_the_code_under_test():
    tree = ast.parse(inspect.getsource(numpy_reference))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "numpy"}, imported
    for row in ROWS:
        assert inspect.getmodule(row.reference) is numpy_reference, row.name


@pytest.mark.parametrize("name", NAMES)
def test_a_row_agrees_with_its_specification(name):
    row = DB[name]
    spec = row.spec
    assert row.cases[0].keys() == {"lr"}, "the first case is the plain one"
    assert row.rich in row.cases
    for kw in row.cases:
        spec.check(kw)
        row.reference(**kw)  # the reference takes the same keyword arguments
    changed = {k for kw in row.cases for k, x in kw.items() if x != spec.defaults[k]}
    assert changed == set(spec.hyperparameters), "every hyperparameter leaves its default"
    if spec.batched:
        assert row.batched and all(len(m) >= 2 for m in row.batched)
        for members in row.batched:
            for kw in members:
                spec.check(kw)
    if row.peer:
        for kw in row.peer.cases:
            spec.check(kw)
            row.peer_cls([torch.zeros(1, requires_grad=True)], **row.peer.translate(kw))
    for kw, _ in row.converges.values():
        spec.check(kw)
