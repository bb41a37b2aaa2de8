"""The layer rules of DESIGN.md hold: every import, lazy ones included, checked by the
layers tool that lives beside the repository (../shared/tools, in a checkout and in CI)
against ../shared/architecture.json."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

import optimlab.optim.adagrad
import optimlab.optim.adam
from optimlab.kernels import scalars

LAYERS = REPO.parent / "shared" / "tools" / "layers.py"


def test_no_layer_rule_is_broken():
    assert LAYERS.is_file(), (f"the layers tool lives beside the repository, not in it; "
                              f"absent here: {LAYERS}")
    done = subprocess.run([sys.executable, str(LAYERS), str(REPO)], capture_output=True,
                          text=True, timeout=120)
    assert "BROKEN" not in done.stdout, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    held, total = done.stdout.split("never-pairs held: ")[1].split()[0].split("/")
    assert held == total, done.stdout


def test_the_step_scalars_keep_their_optimizer_names():
    # written once in kernels/, where the fused kernels may read them; the optimizers'
    # modules still answer to the names their callers used
    assert optimlab.optim.adam.corrections is scalars.corrections
    assert optimlab.optim.adagrad.decayed_lr is scalars.decayed_lr
    assert scalars.corrections(0.5, 0.75, 2, True) == (0.75, 1 - 0.5625)
    assert scalars.corrections(0.5, 0.75, 2, False) == (1.0, 1.0)
    assert scalars.decayed_lr(0.1, 0.5, 3) == 0.1 / 2
