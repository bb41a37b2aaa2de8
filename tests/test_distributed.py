"""Sharded and data-parallel training: every optimizer under FSDP2 and DDP, 2 ranks on gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist
from optim_db import DB

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch built without torch.distributed/gloo")
def test_every_optimizer_trains_under_fsdp2_and_ddp_like_torch(tmp_path):
    """FSDP2's parameters are DTensors: the fused kernels must not read them as plain memory
    (that killed rank 0 with SIGSEGV); the foreach path runs there, and the losses of 30 steps
    equal torch.optim's."""
    out = tmp_path / "losses.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         "--nproc_per_node=2", str(HERE / "distributed_parity.py"), str(out)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    for mode in ("fsdp2", "ddp"):
        assert list(results[mode]) == [name for name, row in DB.items() if row.peer]
        for name, (ours, theirs, impl) in results[mode].items():
            assert len(ours) == len(theirs) == 30
            assert max(abs(a - b) for a, b in zip(ours, theirs)) <= 1e-5, (mode, name)
            assert ours[-1] < ours[0], (mode, name)  # it trained
            assert impl == (["foreach"] if mode == "fsdp2" else ["fused"]), (mode, name, impl)
